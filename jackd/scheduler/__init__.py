"""
Jobs whose ``run_at`` is in the future: held in an ``IScheduleStore`` and
published through the queue backend when due.
"""

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    inlineCallbacks,
    maybeDeferred,
)
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from google.protobuf.message import DecodeError

from jack.job_pb2 import Job, Queue
from jackd.errors import ConfigError, InvalidArgument, JackError, Unavailable
from jackd.timestamps import now_ns

SECOND = 1_000_000_000

# After a dispatch in which jobs could not be published, wait this long
# (seconds) before they are tried again, one step further for each such
# dispatch in a row.
RETRY_DELAYS = (1, 2, 4, 8, 15, 30)

# The only refusal that is for good: the job itself is wrong for the broker
# (too large, a bad attribute), and no retry can change that; the job is
# logged and dropped.  Every other refusal is retried with the backoff,
# never dropped: UNAVAILABLE and RESOURCE_EXHAUSTED pass by themselves,
# and FAILED_PRECONDITION, NOT_FOUND or PERMISSION_DENIED (a topic missing,
# a permission revoked) end once the operator fixes the broker, which must
# not cost the jobs held meanwhile.
PERMANENT = (InvalidArgument,)

# A job whose publish failed on its own with an unexpected error (not a
# refusal: a bug the job triggers) this many times in a row is parked: it
# stays held and is tried again only every PARK_NS, so that it costs the
# other jobs nothing.  Stores park the rows they cannot decode the same way.
STRIKES = 3
PARK_NS = 3600 * SECOND

# Stores log what they could not decode as the scheduler, where operators look.
_store_log = Logger(namespace="jackd.scheduler.store")


def decode_held(rows):
    """
    Decode claimed rows of a durable schedule store.

    @param rows: C{(job_id, blob)} pairs, earliest first.
    @return: C{(jobs, unreadable)}: the ``jack.Job``s that decode, and
        C{(job_id, error)} for each row that does not (the store sets those
        aside for L{PARK_NS}).
    """
    jobs, unreadable = [], []
    for job_id, blob in rows:
        try:
            jobs.append(Job.FromString(blob))
        except (DecodeError, TypeError) as error:
            unreadable.append((job_id, str(error) or type(error).__name__))
    return jobs, unreadable


def log_unreadable(store, claimed):
    """
    Log each row of a claim that did not decode (see L{decode_held}).

    @param store: the ``IScheduleStore`` (for its description).
    @param claimed: C{(jobs, unreadable)}.
    @return: the jobs.
    """
    jobs, unreadable = claimed
    for job_id, error in unreadable:
        _store_log.error(
            "Scheduled job {job_id} in the schedule store {store} cannot be "
            "decoded ({error}); it stays held and is tried again in {hours}h",
            job_id=job_id, store=store.description, error=error,
            hours=PARK_NS // 3_600_000_000_000,
        )
    return jobs

# When a dispatch claimed nothing although the store says a job is due
# (another replica's claim of it is not committed yet), look again after
# this long rather than at once.
RECHECK_NS = 50_000_000

# How long stopService waits, all told, for the dispatch in flight and,
# with a store that is not durable, for the due jobs to be published; then
# it closes the store and stops regardless.
STOP_TIMEOUT = 30.0


def check_options(options):
    """
    Cross-checks between the scheduler's settings and the others.

    @raise ConfigError: C{SCHEDULE_LEASE} does not outlast a publish to
        Pub/Sub and the removal that follows it: another replica would
        claim and publish the jobs again while they are still in flight.
    """
    if options["queue-backend"] != "pubsub":
        return
    lease = options["schedule-lease"]
    needed = (
        options["pubsub-publish-timeout"] + options["pubsub-batch-latency"]
        + options["schedule-db-timeout"]
    )
    if lease <= needed:
        raise ConfigError(
            f"SCHEDULE_LEASE ({lease:g}s) must be longer than PUBSUB_PUBLISH_TIMEOUT "
            f"+ PUBSUB_BATCH_LATENCY + SCHEDULE_DB_TIMEOUT ({needed:g}s): a claim "
            "must outlast a publish and the removal after it, or another replica "
            "publishes the jobs again"
        )


class Scheduler(Service):
    """
    Holds future jobs in C{store} and publishes them through C{backend} no
    earlier than their ``run_at``, in batches, removing each from the store
    only once the backend confirmed it (at least once, never early).

    A dispatch claims due jobs batch by batch (a lease of C{lease} seconds:
    replicas sharing the store do not claim the same job, and the jobs of a
    replica that dies mid-dispatch are claimed by another when the lease
    runs out), publishes each batch, removes the jobs the backend accepted
    or refused for good, and releases those refused for now to be retried
    after a backoff.  A failed batch does not stop the dispatch: the
    batches behind it go on, and a batch whose publish fails as a whole
    with an unexpected error is published again job by job, so that one
    job at fault holds up no other.  Between batches the dispatcher lets
    the reactor serve other work (Enqueue calls) for a turn.

    Jobs the backend confirmed whose removal from the store failed are
    kept, and their removal is retried, with the backoff, before anything
    is claimed again: they are neither counted nor published twice.

    A reactor timer wakes the dispatcher at the earliest time a held job is
    due, and at least every C{poll_interval} seconds (when set) to find jobs
    that other replicas hold or left behind.  Whether a job is due is the
    store's decision (on the database's clock, for a shared store): a timer
    that fires early on a clock that runs ahead claims nothing, and the
    store says when to look again.

    C{stopService} waits for the dispatch in flight and, with a store that
    is not durable, publishes the jobs already due, all within
    C{stop_timeout} seconds, then logs what it drops, telling due jobs the
    backend did not take from jobs not yet due.

    @param store: an ``IScheduleStore``.
    @param backend: an ``IQueueBackend``.
    @param clock: an ``IReactorTime``.
    @param batch_size: the most jobs claimed and published at once.
    @param lease: seconds a claim lasts; longer than a publish can take.
    @param poll_interval: seconds between looks at the store when no timer
        is due sooner, or C{None} for none (one Jack on its own store).
    @param stats_interval: seconds between "jobs held" log events, or
        C{None} for none.
    @param stop_timeout: the most seconds C{stopService} waits.
    """

    _log = Logger()

    def __init__(
        self, store, backend, clock, batch_size=100, lease=60.0,
        poll_interval=None, stats_interval=None, stop_timeout=STOP_TIMEOUT,
    ):
        self._store = store
        self._backend = backend
        self._clock = clock
        self._batch_size = batch_size
        self._lease_ns = int(lease * SECOND)
        self._poll_ns = None if poll_interval is None else int(poll_interval * SECOND)
        self._stats_interval = stats_interval
        self._stop_timeout = stop_timeout
        self._stats_loop = None
        self._timer = None
        self._timer_at = None
        self._opening = None
        self._opened_ok = False
        self._dispatching = None
        self._wake_requested = None
        self._stop_expired = False
        self._stop_error = None
        self._failures = 0
        self._published = 0
        self._dropped = 0
        self._unremoved = []  # ids published (or dropped) but still in the store
        self._strikes = {}  # job_id -> unexpected failures of it alone in a row

    @property
    def store(self):
        return self._store

    def schedule(self, jobs) -> Deferred:
        """
        Hold C{jobs} (``jack.Job``s with a future ``run_at``) until due.

        @return: Deferred firing with a C{None} outcome per job (the
            ``IQueueBackend.publish`` shape) once the store holds them
            (committed, for a durable store), or failing with
            ``Unavailable`` when the store cannot be reached.
        """
        earliest = min(job.run_at.ToNanoseconds() for job in jobs)
        d = self._store.add(jobs)

        def held(_):
            self._wake_at(earliest)
            return [None] * len(jobs)

        d.addCallback(held)
        return d

    def stats(self) -> Deferred:
        """
        What an operator wants to know about the jobs held.

        @return: Deferred firing with a dict: C{held} (jobs held, due or
            not, in every replica's store), C{oldest_due_lateness_s} (how
            many seconds the earliest held job is past its ``run_at``; 0.0
            when none is due), C{published} and C{dropped} (jobs this
            dispatcher published, and dropped after a permanent refusal,
            since it started).
        """
        d = self._store.count()

        def with_earliest(held):
            now = now_ns(self._clock)
            d = self._store.earliest_run_at(now)
            d.addCallback(lambda earliest: self._stats(held, now, earliest))
            return d

        d.addCallback(with_earliest)
        return d

    def _stats(self, held, now, earliest):
        late = 0 if earliest is None else max(0, now - earliest)
        return {
            "held": held,
            "oldest_due_lateness_s": late / SECOND,
            "published": self._published,
            "dropped": self._dropped,
        }

    def startService(self):
        """
        Open the store, then dispatch whatever is due already.

        @return: Deferred firing once the store is open, or failing with
            ``ConfigError`` (one line) when it cannot be opened.
        """
        super().startService()
        self._log.info("Schedule store: {store}", store=self._store.description)
        if not self._store.durable:
            self._log.warn(
                "Scheduled jobs (future run_at) are held in memory: they are "
                "lost when Jack stops"
            )
        self._opening = d = self._store.open()
        d.addCallbacks(self._opened, self._open_failed)
        return d

    def _opened(self, _):
        self._opening = None
        self._opened_ok = True
        if self._stats_interval is not None:
            self._stats_loop = LoopingCall(self._log_stats)
            self._stats_loop.clock = self._clock
            self._stats_loop.start(self._stats_interval, now=False)
        self._wake_at(now_ns(self._clock))

    def _open_failed(self, failure):
        self._opening = None
        failure.trap(Unavailable, ConfigError)
        if failure.check(ConfigError):
            return failure
        raise ConfigError(f"cannot open the {failure.value}")

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._stats_loop is not None and self._stats_loop.running:
            self._stats_loop.stop()
        self._cancel_timer()
        deadline = self._clock.seconds() + self._stop_timeout
        if self._opening is not None:
            yield self._within(_settled(self._opening), deadline)
        finished = True
        if self._dispatching is not None:
            finished = yield self._within(self._dispatching, deadline)
            if not finished:
                self._log.warn(
                    "Stopping without the dispatch of scheduled jobs in flight: it "
                    "did not finish within {timeout}s (the jobs it claimed {fate})",
                    timeout=self._stop_timeout,
                    fate=("are published again once their lease ends"
                          if self._store.durable else "are lost"),
                )
        self._stop_error = None
        if self._opened_ok and finished:
            settled = yield self._within(self._settle_at_stop(), deadline)
            if not settled:
                self._stop_error = f"stopping took over {self._stop_timeout:g}s"
        elif not finished:
            self._stop_error = "their dispatch did not finish in time"
        self._stop_expired = True
        if self._unremoved:
            self._log.warn(
                "Stopping with {count} published scheduled job(s) still in the "
                "store (removing them failed): they are published again once their "
                "lease ends (consumers dedupe on job_id)",
                count=len(self._unremoved),
            )
        if self._opened_ok and not self._store.durable:
            yield self._log_dropped()
        yield self._store.close()

    @inlineCallbacks
    def _settle_at_stop(self):
        """
        The last removals, and, for a store that is not durable, the jobs
        due now published.
        """
        try:
            yield self._remove_unremoved()
        except Exception:  # noqa: BLE001 (logged by _remove_unremoved)
            return
        if not self._store.durable:
            self._stop_error = yield self._publish_due_at_stop()

    @inlineCallbacks
    def _log_dropped(self):
        """
        Log what a store that is not durable drops as Jack stops: the due
        jobs the backend did not take, and the jobs not due yet, apart.
        """
        now = now_ns(self._clock)
        try:
            held = yield self._store.count()
            due = yield self._store.count_due(now)
        except Exception as error:  # noqa: BLE001 (a log line; stopping goes on)
            self._log.warn("Could not count the scheduled jobs dropped: {error}",
                           error=_reason(error))
            return
        if due:
            self._log.warn(
                "Dropping {count} due scheduled job(s) held in memory: the queue "
                "backend did not take them before Jack stopped ({error})",
                count=due, error=self._stop_error or "their retry was not due yet",
            )
        if held - due:
            self._log.warn(
                "Dropping {count} scheduled job(s) held in memory: they were not "
                "due yet and are not published",
                count=held - due,
            )

    @inlineCallbacks
    def _publish_due_at_stop(self):
        """
        Publish the jobs due now, batch by batch, with no retry: a batch
        the backend does not take ends it.

        @return: Deferred firing with C{None}, or with what kept a job from
            being published.
        """
        try:
            while not self._stop_expired:
                jobs = yield self._store.claim(
                    now_ns(self._clock), self._batch_size, self._lease_ns
                )
                if not jobs:
                    return None
                outcomes = yield self._publish(jobs)
                done, retry, park = self._sort(jobs, outcomes)
                yield self._remove(done)
                if retry or park:
                    job, error = (retry or park)[0]
                    return f"first: {job.job_id}: {_reason(error)}"
                if len(jobs) < self._batch_size:
                    return None
                yield self._turn()
        except Exception as error:  # noqa: BLE001 (counted as dropped)
            return _reason(error)
        return "Jack stopped before they were published"

    def _within(self, d, deadline):
        """
        @return: Deferred firing with C{True} once C{d} fired, or with
            C{False} at C{deadline} if it had not (C{d} goes on; its result
            is left to its other callbacks).
        """
        result = Deferred()

        def fire(value):
            if not result.called:
                result.callback(value)

        timer = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), fire, False)

        def settled(outcome):
            if timer.active():
                timer.cancel()
            fire(True)
            return outcome

        d.addBoth(settled)
        return result

    @inlineCallbacks
    def _log_stats(self):
        try:
            stats = yield self.stats()
        except Exception as error:  # noqa: BLE001 (a log line, then the next interval)
            self._log.warn("Could not read schedule stats: {error}", error=error)
            return
        self._log.info(
            "Scheduled jobs: {held} held; the oldest due one is "
            "{oldest_due_lateness_s}s late; {published} published and "
            "{dropped} dropped since start",
            **stats,
        )

    def _wake_at(self, at_ns):
        if at_ns is None or not self.running or self._opening is not None:
            return
        if self._dispatching is not None:
            if self._wake_requested is None or at_ns < self._wake_requested:
                self._wake_requested = at_ns
            return
        if self._timer is not None:
            if self._timer_at <= at_ns:
                return
            self._cancel_timer()
        # The clock reads whole microseconds (now_ns): wake at the first one
        # at or after at_ns, or a run_at between two of them would never be
        # due when the timer fires.
        at_us = -(-at_ns // 1000)
        delay = max(0.0, at_us / 1e6 - self._clock.seconds())
        self._timer = self._clock.callLater(delay, self._dispatch)
        self._timer_at = at_ns

    def _cancel_timer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self._timer_at = None

    def _dispatch(self):
        self._timer = self._timer_at = None
        self._dispatching = self._dispatch_due()
        self._dispatching.addBoth(self._dispatched)

    def _dispatched(self, wake_at):
        self._dispatching = None
        requested, self._wake_requested = self._wake_requested, None
        candidates = [at for at in (wake_at, requested) if at is not None]
        if candidates:
            self._wake_at(min(candidates))

    @inlineCallbacks
    def _dispatch_due(self):
        """
        Finish the removals left over, then claim, publish and settle due
        jobs batch by batch until none is claimable.

        @return: Deferred firing with when to look again (ns): when the
            next held job is due or the next poll, whichever is sooner, or
            after a backoff when the store failed; C{None} for never.
        """
        try:
            yield self._remove_unremoved()
            claimed, retry_delay = yield self._claim_and_publish()
            if retry_delay is None:
                self._failures = 0
            now = now_ns(self._clock)
            next_due = yield self._store.next_due(now)
            if next_due is not None and next_due <= now and not claimed and self.running:
                next_due = now + RECHECK_NS
            if self._poll_ns is None:
                return next_due
            poll = now + self._poll_ns
            return poll if next_due is None else min(next_due, poll)
        except Exception as error:  # noqa: BLE001 (logged; the dispatcher must go on)
            if not self.running:
                return None  # stopService says what became of it
            delay = self._next_delay()
            if isinstance(error, Unavailable):
                self._log.warn(
                    "Dispatching scheduled jobs failed ({error}); trying again in "
                    "{delay}s (claimed jobs are claimed again when their lease ends)",
                    error=str(error), delay=delay,
                )
            else:
                self._log.failure(
                    "Dispatching scheduled jobs failed; trying again in {delay}s "
                    "(claimed jobs are claimed again when their lease ends)",
                    delay=delay,
                )
            return now_ns(self._clock) + delay * SECOND

    @inlineCallbacks
    def _claim_and_publish(self):
        """
        @return: Deferred firing with C{(claimed, retry_delay)}: whether any
            job was claimed, and the backoff (seconds) the jobs refused for
            now were released for, or C{None}.
        """
        retry_delay = None
        claimed = False
        while self.running:
            now = now_ns(self._clock)
            jobs = yield self._store.claim(now, self._batch_size, self._lease_ns)
            if not jobs:
                break
            claimed = True
            outcomes = yield self._publish(jobs)
            done, retry, park = self._sort(jobs, outcomes)
            yield self._remove(done)
            if retry:
                if retry_delay is None:
                    retry_delay = self._next_delay()
                yield self._store.release(
                    [job.job_id for job, _ in retry], now_ns(self._clock),
                    retry_delay * SECOND,
                )
                self._log_retry(retry, retry_delay)
            if park:
                yield self._store.release(
                    [job.job_id for job, _ in park], now_ns(self._clock), PARK_NS
                )
            if len(jobs) < self._batch_size:
                break
            yield self._turn()
        return claimed, retry_delay

    def _turn(self):
        """A Deferred firing on the reactor's next turn."""
        return deferLater(self._clock, 0, lambda: None)

    @inlineCallbacks
    def _remove(self, job_ids):
        """
        Remove C{job_ids} (published, or dropped) from the store; when that
        fails, they are kept for L{_remove_unremoved}.
        """
        if job_ids:
            self._unremoved.extend(job_ids)
            yield self._remove_unremoved()

    @inlineCallbacks
    def _remove_unremoved(self):
        if not self._unremoved:
            return
        job_ids = list(self._unremoved)
        try:
            yield self._store.remove(job_ids)
        except Exception as error:
            self._log.warn(
                "Could not remove {count} published scheduled job(s) from the "
                "store ({error}); removing them is retried before any other job "
                "is claimed",
                count=len(job_ids), error=_reason(error),
            )
            raise
        del self._unremoved[:len(job_ids)]

    @inlineCallbacks
    def _publish(self, jobs):
        """
        The backend's outcome for each job.  A publish that fails as a
        whole with a refusal (the backend is down) is that error for each
        job; one that fails with an unexpected error is tried again job by
        job, so that the outcome of each is its own.
        """
        try:
            outcomes = yield maybeDeferred(self._backend.publish, jobs)
        except Exception:  # noqa: BLE001 (each job's outcome)
            failure = Failure()
        else:
            return outcomes
        if failure.check(JackError) or len(jobs) == 1:
            self._log.failure(
                "Publishing {count} due scheduled job(s) failed as a whole",
                failure, count=len(jobs),
            )
            return [failure] * len(jobs)
        self._log.failure(
            "Publishing {count} due scheduled job(s) failed as a whole with an "
            "unexpected error; publishing them one by one to isolate the job at fault",
            failure, count=len(jobs),
        )
        results = yield DeferredList(
            [maybeDeferred(self._backend.publish, [job]) for job in jobs],
            consumeErrors=True,
        )
        return [outcome[0] if ok else outcome for ok, outcome in results]

    def _sort(self, jobs, outcomes):
        """
        @return: the ids of the jobs done with (published, or refused for
            good and dropped), C{(job, error)} for those to retry with the
            backoff, and C{(job, error)} for those to park.
        """
        done, retry, park = [], [], []
        for job, error in zip(jobs, outcomes):
            if error is None:
                self._published += 1
                self._strikes.pop(job.job_id, None)
                done.append(job.job_id)
            elif isinstance(error, PERMANENT):
                self._strikes.pop(job.job_id, None)
                self._drop(job, error)
                done.append(job.job_id)
            elif isinstance(error, Failure) and not error.check(JackError):
                strikes = self._strikes[job.job_id] = self._strikes.get(job.job_id, 0) + 1
                if strikes >= STRIKES:
                    self._park(job, error, strikes)
                    park.append((job, error))
                else:
                    retry.append((job, error))
            else:
                retry.append((job, error))
        return done, retry, park

    def _drop(self, job, error):
        self._dropped += 1
        self._log.error(
            "Dropping scheduled job {job_id} (producer {producer_id}, job type "
            "{job_type}, queue {queue}, run_at {run_at}): the queue backend "
            "refused it for good ({code}: {error}); it will not be delivered",
            code=error.code,
            error=str(error),
            **_fields(job),
        )

    def _park(self, job, failure, strikes):
        self._log.error(
            "Parking scheduled job {job_id} (producer {producer_id}, job type "
            "{job_type}, queue {queue}, run_at {run_at}): publishing it failed "
            "{strikes} times in a row with an unexpected error ({error}); it "
            "stays held and is tried again every {hours}h",
            strikes=strikes,
            error=_reason(failure),
            hours=PARK_NS // (3600 * SECOND),
            **_fields(job),
        )

    def _next_delay(self):
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        return delay

    def _log_retry(self, retry, delay):
        job, error = retry[0]
        self._log.warn(
            "Could not publish {count} due scheduled job(s) (first: {job_id}: "
            "{error}); they stay held and are retried in {delay}s",
            count=len(retry),
            job_id=job.job_id,
            error=_reason(error),
            delay=delay,
        )


def _fields(job):
    """The fields of C{job} a log event names it by."""
    return {
        "job_id": job.job_id,
        "producer_id": job.producer_id,
        "job_type": job.job_type,
        "queue": Queue.Name(job.queue),
        "run_at": job.run_at.ToJsonString(),
    }


def _reason(error):
    """An error (or a Failure) as one line for a log event."""
    if isinstance(error, Failure):
        error = error.value
    return " ".join(str(error).split()) or type(error).__name__


def _settled(d):
    """
    A Deferred firing with C{None} once C{d} has fired, whatever with,
    leaving C{d}'s own result to its other callbacks.
    """
    settled = Deferred()

    def fired(result):
        settled.callback(None)
        return result

    d.addBoth(fired)
    return settled
