"""
The seams of Jack: configuration storage, queue backends, schedule stores.

Every implementation provides one of these interfaces (checked with
``verifyObject``) and passes the shared conformance mixin in
``jackd.test``.  Methods return Deferreds; each docstring says what the
Deferred fires with and which ``JackError`` it fails with.

Records are the protobuf messages of the wire contract (``jack.Producer``,
``jack.JobType``, ``jack.Job``): plain data, no gRPC involved.  A record a
store hands out belongs to the store: callers read it and never mutate it.
"""

from zope.interface import Attribute, Interface


class IConfigStore(Interface):
    """
    The registry of producers and job types.

    Also an ``IService``: it is started before and stopped after the APIs
    (its C{startService} may return a Deferred: the APIs wait for it).

    Besides the errors each method names, a store kept elsewhere (GCS) may
    fail any call with ``Unavailable`` (not reachable, or no answer in
    time), ``ResourceExhausted`` (too many lookups waiting) or
    ``FailedPrecondition`` (a refusal retrying will not fix).
    """

    description = Attribute("One line for the start-up log: kind and location.")

    def create_producer(producer):
        """
        Register C{producer} (a ``jack.Producer`` with id, name and
        created_at already set).

        @return: Deferred firing with the stored producer, or failing with
            ``AlreadyExists`` when its name is taken.
        """

    def get_producer(producer_id):
        """
        @return: Deferred firing with the ``jack.Producer``, or failing with
            ``NotFound`` (field ``producer_id``).
        """

    def list_producers(page_size, after):
        """
        Producers ordered by name.

        @param page_size: the most producers to return (at least 1).
        @param after: a name: return only producers whose name sorts after
            it; C{None} for the first page.
        @return: Deferred firing with C{(producers, more)}, where C{more}
            says whether producers follow the last one returned.
        """

    def create_job_type(job_type):
        """
        Register C{job_type} (a ``jack.JobType`` with every field set).

        @return: Deferred firing with the stored job type, failing with
            ``NotFound`` (field ``producer_id``) when its producer is not
            registered or ``AlreadyExists`` when the producer already has a
            job type of that name.
        """

    def get_job_type(producer_id, name):
        """
        Look up a job type: this is on the enqueue hot path, so an
        implementation answers from memory whenever it can.

        @return: Deferred firing with the ``jack.JobType``, or failing with
            ``NotFound`` (field ``producer_id`` when the producer is unknown,
            ``job_type`` when the producer has no such job type).
        """

    def list_job_types(producer_id, page_size, after):
        """
        One producer's job types ordered by name; paging as
        L{list_producers}.

        @return: Deferred firing with C{(job_types, more)}, or failing with
            ``NotFound`` (field ``producer_id``).
        """

    def check():
        """
        @return: Deferred firing with C{True} when the store can serve
            reads and writes, C{False} otherwise.
        """


class IQueueBackend(Interface):
    """
    Where accepted jobs go: a broker, or nowhere (noop).

    Also an ``IService``: stopping it flushes every publish in flight.
    """

    description = Attribute("One line for the start-up log: kind and location.")

    def validate(job):
        """
        Refuse, before Jack accepts it, a job this backend could never
        deliver (a broker's message size or attribute limits), so that a
        job for later is refused at enqueue, not when it falls due.  Called
        on the enqueue path: no I/O.

        @raise InvalidArgument: naming the field at fault.
        """

    def publish(jobs):
        """
        Hand C{jobs} (a non-empty sequence of ``jack.Job``) to the broker.

        @return: Deferred firing, once the broker has durably accepted or
            refused each job, with a list holding for each job, in order,
            C{None} (accepted) or the ``JackError`` that refused it.
        """

    def check():
        """
        @return: Deferred firing with C{True} when the backend can accept
            jobs, C{False} otherwise.
        """


class IScheduleStore(Interface):
    """
    Holds jobs whose ``run_at`` is in the future until they are due.

    The dispatcher (``jackd.scheduler.Scheduler``) I{claims} due jobs,
    publishes them and only then removes them, so a job is delivered at
    least once.  A claim is a lease: a claimed job is not claimed again
    until the lease runs out, so dispatchers sharing one store (Jack
    replicas on one database) publish each job once in normal operation,
    and the jobs of a dispatcher that dies mid-dispatch are claimed by
    another once its lease has run out.

    Times are integer nanoseconds since the Unix epoch.  Every call that
    depends on the time gets C{now}, the dispatcher's clock.  Whether a job
    is due and when a lease or a release ends are decided on the I{store's
    clock}: C{now} itself for a store that one Jack owns (memory, SQLite);
    the database's clock for a store that replicas share (PostgreSQL), so
    that replicas whose clocks disagree still agree on both and none
    publishes early because its own clock runs fast.  Durations (a lease, a
    retry delay) are counted on the store's clock; the times a store
    returns are on the caller's clock (a database time plus how far C{now}
    is from the database's clock), so the dispatcher can arm its timers
    with them.

    A job is I{claimable} when its ``run_at`` is at or before the store's
    clock and no claim or release holds it past it.

    Operations fail with ``Unavailable`` when the store's database cannot
    be reached or does not answer in time; the dispatcher retries them.
    """

    durable = Attribute("True when held jobs survive a restart of Jack.")

    description = Attribute("One line for the start-up log: kind and location.")

    def open():
        """
        Get ready for use (connect, create the schema when missing, take
        the lock of a store that one Jack owns).  No other method is called
        before the Deferred fires.

        @return: Deferred firing with C{None}, or failing with
            ``Unavailable`` (the database cannot be reached or used) or
            ``ConfigError`` (it can never be used as configured: another
            Jack holds it); either message is one line.
        """

    def close():
        """
        Let go of connections, threads and locks; operations still in
        flight fail with ``Unavailable``.  Called once.

        @return: Deferred firing with C{None}.
        """

    def add(jobs):
        """
        Hold C{jobs} (``jack.Job``s with ``run_at`` set).  A job whose id is
        held already is not added again.

        @return: Deferred firing with C{None} once they are held: for a
            durable store, committed to disk.
        """

    def claim(now, limit, lease):
        """
        Claim at most C{limit} jobs claimable on the store's clock, earliest
        first (by the time they became claimable, then by id), for C{lease}
        nanoseconds: no other claim returns them before the store's clock
        has moved on that much.  They stay held until L{remove}d.  A job
        the store cannot decode is not returned (it stays held, set aside
        for a while, and is logged).

        @return: Deferred firing with a list of ``jack.Job``s.
        """

    def release(job_ids, now, delay):
        """
        Make the jobs with these ids that this store claimed (and that no
        other claimed since) claimable again C{delay} nanoseconds from now
        on the store's clock: a dispatcher that could not publish them
        retries them then.  Other ids are ignored.

        @return: Deferred firing with C{None}.
        """

    def remove(job_ids):
        """
        Stop holding the jobs with these ids, claimed or not (unknown ids
        are ignored).

        @return: Deferred firing with C{None}.
        """

    def next_due(now):
        """
        @return: Deferred firing with the earliest time, on the caller's
            clock, at which a held job is or becomes claimable (its
            ``run_at``, or when its claim or release ends), or C{None} when
            nothing is held.
        """

    def count():
        """
        @return: Deferred firing with the number of jobs held, claimed or
            not.
        """

    def count_due(now):
        """
        @return: Deferred firing with the number of jobs held whose
            ``run_at`` is at or before the store's clock, claimed or not.
        """

    def earliest_run_at(now):
        """
        @return: Deferred firing with the earliest ``run_at`` held, claimed
            or not, on the caller's clock, or C{None} when nothing is held.
        """
