"""
Configuration storage in Google Cloud Storage: producers and job types
survive restarts of Jack and are shared by every Jack replica that uses the
same bucket and prefix.

Objects, under the prefix (``GCS_PREFIX``, taken as a folder: a ``/`` is
added when it lacks one), each written once and never changed, each JSON in
protobuf's JSON mapping::

    producers/<producer_id>.json               the jack.Producer
    producer-names/<name>.json                 the claim on a producer name:
                                               {"producerId": ..., "name": ...}
    job-types/<producer_id>/<name>.json        the jack.JobType

Names and ids become one segment of a key each
(L{jackd.storage.gcs_objects.encode_name}): the UTF-8 bytes of every
character but ``A-Z a-z 0-9 - _ ~`` become ``%XX`` (so ``/``, ``%`` and
``.`` never reach a key as themselves); a name whose percent-encoding would
pass 128 bytes becomes ``=`` and the base64url of its UTF-8 instead, so
that no segment passes 172 bytes: the longest key Jack makes stays far
below GCS's 1024 bytes, and every segment fits the file names of
fake-gcs-server's filesystem backend (about 235 bytes).

Every write is create-only (``if_generation_match=0``): of two replicas
creating the same name at once, GCS lets exactly one write the object, and
the other answers ``AlreadyExists``.  A producer takes two writes: its
record first, then the claim on its name.  A producer exists when its claim
names a record that is there, so a crash between the two writes leaves a
record no claim points to, which every reader ignores, never a claimed name
without its producer.

Reads come from an in-memory snapshot, loaded at start (the start waits for
it), refreshed in the background (listing the prefix page by page and
downloading only objects whose generation changed) and updated by this
replica's own writes at once.  A lookup the snapshot misses (a record made
on another replica a moment ago) asks GCS for that one record; an answer
that it is not there is remembered for a short while (the negative cache),
so a flood of unknown ids does not turn into a flood of GCS requests.
``NotFound`` only ever follows GCS saying so: lookups beyond those GCS can
take at once wait their turn, and when too many wait already they answer
``ResourceExhausted``.

Time limits.  Every store operation (an admin call, a lookup, a health
check) has one deadline, C{timeout} seconds from when it was asked for:
each request it makes gets the time left as its timeout and its retry
deadline, a call still waiting for a thread when it passes never starts,
and at the deadline the caller has its answer whatever the request is
doing: the request's connection is cut, so a GCS that trickles its answers
cannot hold a thread either.  A refresh (and the load at start) may take
longer in all: its deadline moves on with every page listed and object
downloaded, so it fails only when GCS makes no progress for C{timeout}.

Failures.  Transport errors, timeouts, 5xx, 408, 429 and answers that are
not GCS's JSON API mean that GCS cannot be reached: everything in the
snapshot keeps serving, writes and lookups of unknown records answer
``Unavailable`` and ``check`` says C{False}; all of it recovers by itself.
GCS refusing one request (400, 403, ...) is that request's problem:
``FailedPrecondition`` saying what GCS answered, nothing else changes.  One
object that cannot be read (GCS refuses it, its bytes do not decode, it is
not a record) is that object's problem: it is left out with a warning, and
every other object still loads.

google-cloud-storage blocks, so its calls run in thread pools of the
store's own, one for lookups and one for everything else (so that a flood
of lookups never holds up admin writes or health checks); results come
back to the reactor thread, which alone touches the snapshot.
"""

import contextlib
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from twisted.application.service import Service
from twisted.internet.defer import (
    Deferred,
    DeferredLock,
    fail,
    inlineCallbacks,
    succeed,
)
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from jack.admin_pb2 import JobType, Producer
from jackd.errors import (
    AlreadyExists,
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    JackError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from jackd.interfaces import IConfigStore
from jackd.storage.gcs_calls import (
    REFUSED,
    Busy,
    Deadline,
    DeadlinePassed,
    GCSError,
    Refused,
    Stopping,
    Unreachable,
    classify,
    current_deadline,
    daemon_thread,
    first_line,
    watch_connections,
    working_under,
)
from jackd.storage.gcs_objects import (
    CLAIM,
    JOB_TYPE,
    MAX_KEY_BYTES,
    MAX_RECORD_BYTES,
    PRODUCER,
    Layout,
    Snapshot,
    StoredObject,
    check_bucket,
    check_emulator_host,
    check_prefix,
    gunzip,
    to_json,
    too_long,
    wanted_downloads,
)

CONTENT_TYPE = "application/json; charset=utf-8"
# Custom metadata naming the write that created an object, so that a
# create-only upload retried after a lost answer knows its own object.
WRITE_ID = "jack-write-id"

LIST_PAGE_SIZE = 1000  # GCS's largest listing page
CUT_GRACE = 0.25  # seconds past a deadline before its connections are cut


def _unknown_producer(producer_id):
    return NotFound("producer_id", f"no producer {producer_id!r} is registered")


def _unknown_job_type(producer_id, name):
    return NotFound("job_type", f"producer {producer_id!r} has no job type {name!r}")


def _name_taken(name):
    return AlreadyExists(f"name: a producer named {name!r} already exists")


def _job_type_taken(job_type):
    return AlreadyExists(
        f"name: producer {job_type.producer_id!r} already has a job type named "
        f"{job_type.name!r}"
    )


def default_client():
    """
    A ``google.cloud.storage.Client`` configured as the library configures
    itself: ``STORAGE_EMULATOR_HOST``, or Google's default credentials.
    No project is needed for objects in a named bucket.
    """
    from google.cloud import storage

    return storage.Client(project=None)


@implementer(IConfigStore)
class GCSConfigStore(Service):
    """
    @param bucket: the bucket's name.
    @param prefix: the folder in the bucket (C{""}: the bucket's root).
    @param reactor: the reactor results come back to from threads, and
        whose clock times deadlines.
    @param clock: an ``IReactorTime`` for the refresh loop and the negative
        cache (the reactor unless given).
    @param refresh_interval: seconds between background refreshes.
    @param negative_ttl: seconds an answer "GCS does not have it" is reused
        (0: never).
    @param timeout: seconds one store operation may take in all, every
        request and retry included; a refresh fails when GCS makes no
        progress for this long.
    @param client_factory: makes the ``google.cloud.storage.Client``
        (called in a thread at start, after twistd forks).
    @param list_page_size: objects per listing page.
    @ivar stats: counts of GCS requests and lookups, for operators (the
        manhole) and tests.
    """

    _log = Logger()

    THREADS = 3  # pool threads for writes, one refresh and checks
    LOOKUP_THREADS = 3  # pool threads for lookups
    FANOUT = 4  # parallel downloads within one refresh (3 + 3 + 4 <= the HTTP pool's 10)
    MAX_LOOKUPS = 1000  # distinct lookups waiting or running; beyond: RESOURCE_EXHAUSTED
    MAX_MISSES = 10_000  # entries of the negative cache

    def __init__(
        self,
        bucket,
        prefix="",
        *,
        reactor=None,
        clock=None,
        refresh_interval=10.0,
        negative_ttl=2.0,
        timeout=5.0,
        client_factory=default_client,
        list_page_size=LIST_PAGE_SIZE,
    ):
        if reactor is None:
            from twisted.internet import reactor
        check_prefix(prefix)
        check_bucket(bucket)
        self.bucket = bucket
        self._layout = Layout(prefix)
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._refresh_interval = refresh_interval
        self._negative_ttl = negative_ttl
        self._timeout = timeout
        self._client_factory = client_factory
        self._page_size = list_page_size
        self.description = (
            f"GCS gs://{bucket}/{self._layout.prefix} (shared by every Jack using it)"
        )

        self._pool = ThreadPool(minthreads=0, maxthreads=self.THREADS, name="jack-gcs")
        self._lookup_pool = ThreadPool(
            minthreads=0, maxthreads=self.LOOKUP_THREADS, name="jack-gcs-lookup"
        )
        for pool in (self._pool, self._lookup_pool):
            pool.threadFactory = daemon_thread
        self._client = None
        self._bucket = None
        self._retry = None
        self._loop = None
        self._refresh_lock = DeferredLock()
        self._in_flight = 0  # calls whose caller waits for an answer
        self._idle = []  # Deferreds fired when nothing is in flight
        self._deadlines = set()  # of calls whose thread has not finished
        self._working = set()  # Deferreds of pool threads still at work
        self._pools_stopping = False

        self._objects = {}  # key -> StoredObject
        self._snapshot = Snapshot()
        self._seq = 0  # counts local writes and lookups
        self._written = {}  # key -> seq of the local write or lookup
        self._loaded = False
        self._reachable = True
        self._refusal = None  # why GCS refused the last health probe
        self._lookups = {}  # key -> [Deferred] waiting for one GCS lookup
        self._misses = {}  # key -> (time until which it is reused, error or None)

        self._stats_lock = threading.Lock()
        self.stats = dict.fromkeys(
            ["list_pages", "downloads", "uploads", "lookups", "lookups_refused",
             "probes", "deadlines_passed"],
            0,
        )

    @property
    def prefix(self) -> str:
        return self._layout.prefix

    @property
    def layout(self) -> Layout:
        return self._layout

    def _count(self, name, n=1):
        with self._stats_lock:
            self.stats[name] += n

    def _endpoint(self) -> str:
        return getattr(self._client, "api_endpoint", None) or "GCS"

    # Start and stop.

    def startService(self):
        super().startService()
        return self._start()

    @inlineCallbacks
    def _start(self):
        from google.cloud.storage.retry import DEFAULT_RETRY

        self._pools_stopping = False
        self._pool.start()
        self._lookup_pool.start()
        began = time.monotonic()
        try:
            # Made here, in a thread: twistd has forked already, and
            # finding credentials may block on the network.
            self._client = yield deferToThreadPool(
                self._reactor, self._pool, self._make_client
            )
            self._bucket = self._client.bucket(self.bucket)
            self._retry = DEFAULT_RETRY.with_delay(initial=0.1, maximum=1.0)
            downloads = self.stats["downloads"]
            yield self._refresh_lock.run(self._refresh_once, untranslated=True)
        except GCSError as error:
            if not self.running:
                return  # stopped while loading
            raise ConfigError(f"GCS: {error}") from None
        if not self.running:
            return  # stopped while loading
        producers, job_types = self._snapshot.counts()
        self._log.info(
            "Config storage: {producers} producer(s) and {job_types} job type(s) "
            "loaded from gs://{bucket}/{prefix} ({downloads} object(s) downloaded "
            "in {seconds:.1f}s); refreshing every {interval}s",
            producers=producers,
            job_types=job_types,
            bucket=self.bucket,
            prefix=self.prefix,
            downloads=self.stats["downloads"] - downloads,
            seconds=time.monotonic() - began,
            interval=self._refresh_interval,
        )
        self._loop = LoopingCall(self._refresh_quietly)
        self._loop.clock = self._clock
        self._loop.start(self._refresh_interval, now=False)

    def _make_client(self):
        """(In a thread.)  The client, its connections cut at deadlines."""
        with self._library():
            client = self._client_factory()
            watch_connections(client._http)
        return client

    @inlineCallbacks
    def stopService(self):
        """
        Stop refreshing; wait for the calls in flight, at most until their
        deadlines (a refresh is cut at once: nothing is lost by that).
        """
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for deadline in list(self._deadlines):
            if deadline.sliding:
                self._time_up(deadline, stopping=True)
        if self._in_flight:
            idle = Deferred()
            self._idle.append(idle)
            yield idle
        if self._client is not None:
            self._client.close()
        self._stop_pools()

    def _stop_pools(self):
        pools = [pool for pool in (self._pool, self._lookup_pool) if pool.started]
        if self._pools_stopping or not pools:
            return
        self._pools_stopping = True
        if not self._working:
            for pool in pools:
                pool.stop()
            return
        # Threads still in requests whose deadline passed (their connections
        # are cut; they end soon): do not block the reactor joining them.
        self._log.info(
            "Config storage stopped with {count} GCS request(s) still ending",
            count=len(self._working),
        )
        stopper = daemon_thread(
            target=lambda: [pool.stop() for pool in pools], name="jack-gcs-stop"
        )
        stopper.start()

    # Calls into the pools.

    def _call(self, method, *args, pool=None, sliding=False, untranslated=False, late=None):
        """
        Run C{method(*args)} in a pool thread, within one deadline.

        @param pool: the thread pool (the main one unless given).
        @param sliding: the deadline moves on with progress (a refresh).
        @param late: called with C{method}'s result when it comes after the
            deadline (a write that succeeded after all).
        @return: Deferred firing with its result; failing with
            ``Unavailable`` when GCS could not be used in time,
            ``FailedPrecondition`` when GCS refused (or with the
            L{GCSError} itself when C{untranslated}).
        """
        pool = self._pool if pool is None else pool
        if not pool.started:
            return fail(Unavailable("config storage (GCS) is not running"))
        deadline = Deadline(self._timeout, sliding)
        result = deadline.result = Deferred()
        deadline.timer = self._reactor.callLater(
            self._timeout + CUT_GRACE, self._time_up, deadline
        )
        self._deadlines.add(deadline)
        self._in_flight += 1
        work = deferToThreadPool(self._reactor, pool, self._in_thread, deadline, method, args)
        self._working.add(work)
        work.addBoth(self._worked, deadline, work, late)
        result.addBoth(self._call_done)
        result.addCallbacks(self._answered, self._call_failed, errbackArgs=(untranslated,))
        return result

    def _in_thread(self, deadline, method, args):
        """(In a pool thread.)  Run C{method} under C{deadline}."""
        if deadline.expired or time.monotonic() >= deadline.at:
            raise self._busy()  # it waited its whole time for a thread
        deadline.started = True
        with working_under(deadline):
            return method(*args)

    def _worked(self, outcome, deadline, work, late):
        self._working.discard(work)
        self._deadlines.discard(deadline)
        if deadline.timer.active():
            deadline.timer.cancel()
        result = deadline.result
        if not result.called:
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(outcome)
            return
        # After the deadline: the caller has had its answer already.
        if isinstance(outcome, Failure):
            if not outcome.check(GCSError, JackError, DeadlinePassed):
                self._log.failure("A GCS call failed after its deadline", outcome)
        elif late is not None and outcome:
            late(outcome)
        return

    def _time_up(self, deadline, stopping=False):
        """
        C{deadline} passed (or the store stops): cut its connections and
        answer its caller.  A sliding deadline that moved is armed again.
        """
        if deadline.sliding and not stopping and not deadline.expired:
            left = deadline.at - time.monotonic()
            if left > 0:
                deadline.timer = self._reactor.callLater(
                    left + CUT_GRACE, self._time_up, deadline
                )
                return
        if deadline.timer.active():
            deadline.timer.cancel()
        deadline.expire()
        if deadline.result.called:
            return
        self._count("deadlines_passed")
        timeout, endpoint = self._timeout, self._endpoint()
        if stopping:
            error = Stopping("Jack is stopping")
        elif not deadline.started:
            error = self._busy()
        elif deadline.sliding:
            error = Unreachable(f"{endpoint} made no progress for {timeout:g}s")
        else:
            error = Unreachable(f"no answer from {endpoint} within {timeout:g}s")
        deadline.result.errback(Failure(error))

    def _busy(self):
        return Busy(
            f"the call waited {self._timeout:g}s behind other GCS calls without starting"
        )

    def _call_done(self, result):
        self._in_flight -= 1
        if not self._in_flight:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)
        return result

    def _answered(self, result):
        self._set_reachable(True)
        return result

    def _call_failed(self, failure, untranslated):
        if failure.check(Unreachable):
            self._set_reachable(False, str(failure.value))
        elif failure.check(Refused, JackError):
            self._set_reachable(True)
        if failure.check(GCSError) and untranslated:
            return failure
        if failure.check(Unreachable, Stopping):
            raise Unavailable(f"config storage (GCS) unavailable: {failure.value}")
        if failure.check(Busy):
            raise Unavailable(f"config storage (GCS) busy: {failure.value}; retry later")
        if failure.check(Refused):
            raise FailedPrecondition(
                f"config storage (GCS) refused the request: {failure.value}"
            )
        return failure

    def _set_reachable(self, reachable, reason=None):
        if reachable == self._reachable or not self._loaded:
            self._reachable = reachable
            return
        self._reachable = reachable
        if reachable:
            self._log.info("GCS is reachable again: admin writes work again")
            if self.running:
                self._refresh_quietly()
        else:
            producers, job_types = self._snapshot.counts()
            self._log.warn(
                "GCS unreachable ({reason}): Jack goes on enqueueing with the "
                "{producers} producer(s) and {job_types} job type(s) it holds; "
                "admin writes answer UNAVAILABLE until GCS is back",
                reason=reason,
                producers=producers,
                job_types=job_types,
            )

    # In pool threads: talking to GCS.

    @contextlib.contextmanager
    def _library(self):
        """
        (In a thread.)  Around calls of the client library: whatever it
        raises (a bug of its own included: an empty answer it cannot
        parse) becomes an L{Unreachable} or L{Refused} saying why.
        """
        try:
            yield
        except (JackError, GCSError):
            raise
        except Exception as error:  # noqa: BLE001 (any library error: a GCSError)
            raise self._failure(error) from None

    def _failure(self, error) -> GCSError:
        kind, reason = classify(error, self.bucket, self._endpoint(), self._timeout)
        return Refused(reason) if kind == REFUSED else Unreachable(reason)

    def _limits(self) -> dict:
        """
        (In a thread.)  The timeout and retry of the next request: the
        time left to the operation's deadline.

        @raise DeadlinePassed: there is none left.
        """
        deadline = current_deadline()
        if deadline is None:  # outside a store operation (tests)
            deadline = Deadline(self._timeout)
        left = deadline.remaining()
        return {"timeout": left, "retry": self._retry.with_timeout(left)}

    # Refreshing the snapshot.

    def refresh(self):
        """
        Bring the snapshot up to date with the bucket: list every object
        under the prefix (page by page) and download only those that are
        new or whose generation changed.

        @return: Deferred firing with C{None}; failing with ``Unavailable``
            or ``FailedPrecondition`` (GCS refused the listing).
        """
        return self._refresh_lock.run(self._refresh_once)

    def _refresh_once(self, untranslated=False):
        since = self._seq
        known = {key: stored.generation for key, stored in self._objects.items()}
        d = self._call(self._scan, known, sliding=True, untranslated=untranslated)
        d.addCallback(self._apply_scan, since)
        return d

    def _refresh_quietly(self):
        """A background refresh: GCS going away is logged once, by L{_set_reachable}."""
        d = self.refresh()
        d.addErrback(self._refresh_failed)
        return d

    def _refresh_failed(self, failure):
        if failure.check(Unavailable):
            return
        if failure.check(FailedPrecondition):
            self._log.warn("Refreshing the snapshot failed: {reason}", reason=failure.value)
            return
        self._log.failure("Refreshing the snapshot failed", failure)
        return

    def _scan(self, known):
        """
        (In a thread.)  List the prefix and download what C{known} (key to
        generation) lacks.

        @return: C{(listed, fetched)}: the generation of every object
            listed, and a L{StoredObject} (or C{None}: gone since listed)
            for each object downloaded or found too large.
        """
        deadline = current_deadline()
        listed = {}
        with self._library():
            pages = self._client.list_blobs(
                self.bucket,
                prefix=self.prefix,
                page_size=self._page_size,
                fields="items(name,generation,size),nextPageToken",
                **self._limits(),
            ).pages
            for page in pages:
                self._count("list_pages")
                for blob in page:
                    listed[blob.name] = (blob.generation, blob.size)
                deadline.progress()
        wanted, too_large = wanted_downloads(listed, known, self._layout)
        fetched = {
            key: StoredObject(
                generation,
                self._layout.kind(key),
                None,
                f"is {size} bytes long; a record is at most {MAX_RECORD_BYTES}",
            )
            for key, generation, size in too_large
        }
        fetched.update(self._fetch_all(wanted, deadline))
        return {key: generation for key, (generation, _) in listed.items()}, fetched

    def _fetch_all(self, wanted, deadline):
        """(In a thread.)  Download C{wanted}, C{FANOUT} at a time."""
        if not wanted:
            return {}

        def fetch(item):
            with working_under(deadline):
                stored = self._fetch(*item)
            deadline.progress()
            return stored

        pool = ThreadPoolExecutor(
            min(self.FANOUT, len(wanted)), thread_name_prefix="jack-gcs-fetch"
        )
        try:
            return dict(zip([key for key, _ in wanted], pool.map(fetch, wanted)))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, key, generation=None):
        """
        (In a thread.)  Download one object (that C{generation} of it).

        @return: a L{StoredObject} (with a problem when the object cannot
            be read or is not a record), or C{None} when there is no such
            object.
        @raise Unreachable: GCS cannot be reached.
        """
        kind = self._layout.kind(key)
        blob = self._bucket.blob(key, generation=generation)
        self._count("downloads")
        try:
            # Raw: the bytes as stored; a wrong Content-Encoding is this
            # object's problem, not a failure of the whole download path.
            data = blob.download_as_bytes(raw_download=True, **self._limits())
        except Exception as error:  # noqa: BLE001 (sorted by _fetch_failed)
            return self._fetch_failed(error, kind)
        encoding = (blob.content_encoding or "identity").lower()
        if encoding == "gzip":
            try:
                data = gunzip(data, MAX_RECORD_BYTES)
            except ValueError as error:
                problem = f"declares Content-Encoding gzip but {error}"
                return StoredObject(blob.generation, kind, None, problem)
        elif encoding != "identity":
            problem = f"has Content-Encoding {encoding!r}, which Jack does not read"
            return StoredObject(blob.generation, kind, None, problem)
        try:
            record, problem = self._layout.parse(key, kind, data), None
        except ValueError as error:
            record, problem = None, str(error)
        return StoredObject(blob.generation, kind, record, problem)

    def _fetch_failed(self, error, kind):
        """
        (In a thread.)  A download failed: C{None} when the object is not
        there, a L{StoredObject} with a problem when GCS refused this one
        object or its bytes are corrupt.

        @raise GCSError: GCS cannot be used at all.
        """
        from google.api_core import exceptions as api
        from google.cloud.storage.exceptions import DataCorruption

        if isinstance(error, api.NotFound):
            return None
        if isinstance(error, api.ClientError) and error.code not in (401, 408, 429):
            problem = f"GCS refuses to send it: {error.code} {first_line(error)}"
            return StoredObject(None, kind, None, problem)
        if isinstance(error, DataCorruption):
            problem = f"its download did not match its checksum: {first_line(error)}"
            return StoredObject(None, kind, None, problem)
        if isinstance(error, (JackError, GCSError)):
            raise error
        raise self._failure(error) from None

    def _apply_scan(self, scanned, since):
        """
        Swap in what a scan found.  Objects this replica wrote or looked up
        after the scan began stay, though the listing may predate them.
        """
        listed, fetched = scanned
        objects, changed = {}, False
        for key, generation in listed.items():
            previous = self._objects.get(key)
            if key in fetched:
                stored = fetched[key]
                if stored is not None:
                    objects[key] = stored
                    if stored.problem:
                        self._warn_problem(key, stored, previous)
                changed = changed or stored != previous
                continue
            if previous is not None and previous.generation == generation:
                objects[key] = previous
        for key, stored in self._objects.items():
            if key not in objects:
                if self._written.get(key, 0) > since:
                    objects[key] = stored
                else:
                    changed = True  # deleted from the bucket
        self._written = {key: seq for key, seq in self._written.items() if seq > since}
        self._objects = objects
        if changed or not self._loaded:
            self._snapshot = Snapshot.build(objects, self._layout)
            if self._snapshot.dangling_claims:
                self._log.warn(
                    "{count} producer name claim(s) name no producer record (a record "
                    "deleted by hand?); those names stay taken: {keys}",
                    count=len(self._snapshot.dangling_claims),
                    keys=", ".join(self._snapshot.dangling_claims[:10]),
                )
        self._loaded = True

    def _warn_problem(self, key, stored, previous):
        """Warn about an object left out, once for each problem it has."""
        if (
            previous is not None
            and previous.problem == stored.problem
            and previous.generation == stored.generation
        ):
            return
        self._log.warn(
            "Ignoring gs://{bucket}/{key}: {problem}",
            bucket=self.bucket,
            key=key,
            problem=stored.problem,
        )

    def _remember(self, entries):
        """
        Add objects this replica wrote or looked up (C{(key, StoredObject)}
        pairs) to the snapshot.
        """
        self._seq += 1
        for key, stored in entries or ():
            self._objects[key] = stored
            self._written[key] = self._seq
            if stored.kind == PRODUCER:
                self._snapshot.add_producer(stored.record)
            elif stored.kind == JOB_TYPE:
                self._snapshot.add_job_type(stored.record)

    # Lookups the snapshot misses.

    def _look_up(self, key, method, *args):
        """
        Ask GCS for one record the snapshot lacks (C{method(*args)} in a
        lookup thread, returning C{(key, StoredObject)} pairs, the record
        wanted first, or C{None}).  Lookups of one C{key} in flight at once
        share one request; an absent answer (or an unusable object) is
        reused for C{negative_ttl}.  Lookups beyond the lookup threads wait
        for one, within their deadline.

        @return: Deferred firing with the record, or C{None} when GCS does
            not have it; failing with ``Unavailable`` when GCS is known to
            be unreachable or did not answer in time,
            ``ResourceExhausted`` when C{MAX_LOOKUPS} wait already, or
            ``FailedPrecondition`` when the record's object cannot be used.
        """
        now = self._clock.seconds()
        cached = self._misses.get(key)
        if cached is not None:
            until, error = cached
            if now < until:
                return succeed(None) if error is None else fail(error)
            del self._misses[key]
        waiting = self._lookups.get(key)
        if waiting is None:
            if not self._reachable:
                return fail(
                    Unavailable(
                        "config storage (GCS) unavailable: cannot look up a "
                        f"{key[0]} this replica does not hold yet; retry later"
                    )
                )
            if len(self._lookups) >= self.MAX_LOOKUPS:
                self._count("lookups_refused")
                return fail(
                    ResourceExhausted(
                        f"config storage (GCS): {len(self._lookups)} lookups of producers "
                        "and job types this replica does not hold are waiting for GCS "
                        "already; retry later"
                    )
                )
            waiting = self._lookups[key] = []
            self._count("lookups")
            d = self._call(method, *args, pool=self._lookup_pool, late=self._remember)
            d.addBoth(self._looked_up, key)
        mine = Deferred()
        waiting.append(mine)
        return mine

    def _looked_up(self, result, key):
        waiting = self._lookups.pop(key)
        if isinstance(result, Failure):
            if result.check(FailedPrecondition):
                self._miss(key, result.value)
            for d in waiting:
                d.errback(result)
            return
        if result is None:
            self._miss(key, None)
            record = None
        else:
            self._remember(result)
            record = result[0][1].record
        for d in waiting:
            d.callback(record)

    def _miss(self, key, error):
        """Remember for C{negative_ttl} that C{key} is not there (or C{error})."""
        if self._negative_ttl <= 0:
            return
        self._misses.pop(key, None)
        self._misses[key] = (self._clock.seconds() + self._negative_ttl, error)
        if len(self._misses) > self.MAX_MISSES:
            del self._misses[next(iter(self._misses))]

    def _usable(self, key, stored):
        """
        (In a thread.)
        @raise FailedPrecondition: the object at C{key} holds no usable record.
        """
        if stored.record is None:
            raise FailedPrecondition(
                f"config storage (GCS): gs://{self.bucket}/{key} cannot be used "
                f"({stored.problem}); an operator must fix or delete it"
            )

    def _fetch_producer(self, producer_id):
        """
        (In a thread.)  A producer's record and the claim on its name, when
        both are there and agree.
        """
        record_key = self._layout.producer(producer_id)
        if too_long(record_key):
            return None
        record = self._fetch(record_key)
        if record is None:
            return None
        self._usable(record_key, record)
        claim_key = self._layout.claim(record.record.name)
        if too_long(claim_key):
            return None
        claim = self._fetch(claim_key)
        if claim is None:
            return None  # a record no claim names: a create that never finished
        self._usable(claim_key, claim)
        if claim.record.producer_id != producer_id:
            return None  # the name is another producer's
        return [(record_key, record), (claim_key, claim)]

    def _fetch_job_type(self, producer_id, name):
        """(In a thread.)  One job type's object."""
        key = self._layout.job_type(producer_id, name)
        if too_long(key):
            return None
        stored = self._fetch(key)
        if stored is None:
            return None
        self._usable(key, stored)
        return [(key, stored)]

    def _known_producer(self, producer_id):
        """
        @return: Deferred firing with the producer, from the snapshot or
            else from GCS; failing with ``NotFound`` or as L{_look_up}.
        """
        producer = self._snapshot.producers.get(producer_id)
        if producer is not None:
            return succeed(producer)
        d = self._look_up((PRODUCER, producer_id), self._fetch_producer, producer_id)
        d.addCallback(self._found_producer, producer_id)
        return d

    def _found_producer(self, producer, producer_id):
        if producer is None:
            raise _unknown_producer(producer_id)
        return producer

    def _known_job_type(self, producer_id, name):
        job_type = self._snapshot.job_types.get(producer_id, {}).get(name)
        if job_type is not None:
            return succeed(job_type)
        d = self._look_up(
            (JOB_TYPE, producer_id, name), self._fetch_job_type, producer_id, name
        )
        d.addCallback(self._found_job_type, producer_id, name)
        return d

    def _found_job_type(self, job_type, producer_id, name):
        if job_type is None:
            raise _unknown_job_type(producer_id, name)
        return job_type

    # Create-only writes.

    def _create_object(self, key, data, token=None):
        """
        (In a thread.)  Write C{data} at C{key} unless an object is there.

        @param token: names this write in the object's metadata (a new
            one unless given).
        @return: the new object's generation, or C{None} when an object was
            there already (written by another call).
        @raise GCSError: GCS could not be reached, or refused the write.
        """
        from google.api_core.exceptions import PreconditionFailed

        token = token or uuid.uuid4().hex
        blob = self._bucket.blob(key)
        blob.metadata = {WRITE_ID: token}
        self._count("uploads")
        with self._library():
            try:
                blob.upload_from_string(
                    data, content_type=CONTENT_TYPE, if_generation_match=0, **self._limits()
                )
                return blob.generation
            except PreconditionFailed:
                pass
            # Taken: by another call, or by an earlier attempt of this one
            # whose answer was lost (the client retries uploads).
            existing = self._bucket.get_blob(key, **self._limits())
        if existing is not None and (existing.metadata or {}).get(WRITE_ID) == token:
            return existing.generation
        return None

    def _delete_quietly(self, key):
        """
        (In a thread.)  Delete C{key}, if GCS lets us: what stays behind is
        a record no claim names, which readers ignore.
        """
        with contextlib.suppress(GCSError), self._library():
            self._bucket.blob(key).delete(**self._limits())

    @staticmethod
    def _check_key(key, field):
        if too_long(key):
            raise InvalidArgument(
                field, f"is too long to be stored in GCS (its object name would pass "
                f"{MAX_KEY_BYTES} bytes)"
            )

    def _write_producer(self, producer):
        """
        (In a thread.)  The record first, then the claim on the name: a
        crash between the two leaves a record no claim names, which
        readers ignore.  A claim lost to another producer, or refused by
        GCS (so never written), takes the record back.
        """
        record_key = self._layout.producer(producer.producer_id)
        claim = Producer(producer_id=producer.producer_id, name=producer.name)
        claim_key = self._layout.claim(producer.name)
        self._check_key(record_key, "producer_id")
        self._check_key(claim_key, "name")
        record_generation = self._create_object(record_key, to_json(producer))
        if record_generation is None:
            raise AlreadyExists(f"producer_id: {producer.producer_id!r} is taken")
        try:
            claim_generation = self._create_object(
                claim_key, to_json(claim, every_field=False)
            )
        except Refused:
            self._delete_quietly(record_key)
            raise
        if claim_generation is None:
            self._delete_quietly(record_key)
            raise _name_taken(producer.name)
        return [
            (record_key, StoredObject(record_generation, PRODUCER, producer, None)),
            (claim_key, StoredObject(claim_generation, CLAIM, claim, None)),
        ]

    def _write_job_type(self, job_type):
        """(In a thread.)  One create-only object."""
        key = self._layout.job_type(job_type.producer_id, job_type.name)
        self._check_key(key, "name")
        generation = self._create_object(key, to_json(job_type))
        if generation is None:
            raise _job_type_taken(job_type)
        return [(key, StoredObject(generation, JOB_TYPE, job_type, None))]

    def _stored(self, entries):
        self._remember(entries)
        return entries[0][1].record

    # IConfigStore.

    def create_producer(self, producer):
        if producer.name in self._snapshot.ids_by_name:
            return fail(_name_taken(producer.name))
        stored = Producer()
        stored.CopyFrom(producer)
        d = self._call(self._write_producer, stored, late=self._remember)
        d.addCallback(self._stored)
        return d

    def get_producer(self, producer_id):
        return self._known_producer(producer_id)

    def list_producers(self, page_size, after):
        return succeed(self._snapshot.list_producers(page_size, after))

    def create_job_type(self, job_type):
        stored = JobType()
        stored.CopyFrom(job_type)
        d = self._known_producer(stored.producer_id)
        d.addCallback(lambda _: self._create_job_type(stored))
        return d

    def _create_job_type(self, job_type):
        if job_type.name in self._snapshot.job_types.get(job_type.producer_id, {}):
            return fail(_job_type_taken(job_type))
        d = self._call(self._write_job_type, job_type, late=self._remember)
        d.addCallback(self._stored)
        return d

    def get_job_type(self, producer_id, name):
        types = self._snapshot.job_types.get(producer_id)
        if types is not None:
            job_type = types.get(name)
            if job_type is not None:
                return succeed(job_type)  # the enqueue hot path: memory only
            return self._known_job_type(producer_id, name)
        d = self._known_producer(producer_id)
        d.addCallback(lambda _: self._known_job_type(producer_id, name))
        return d

    def list_job_types(self, producer_id, page_size, after):
        if producer_id in self._snapshot.job_types:
            return succeed(self._snapshot.list_job_types(producer_id, page_size, after))
        # A producer made on another replica: refresh for all its job types.
        d = self._known_producer(producer_id)
        d.addCallback(lambda _: self.refresh())
        d.addCallback(lambda _: self._list_job_types(producer_id, page_size, after))
        return d

    def _list_job_types(self, producer_id, page_size, after):
        if producer_id not in self._snapshot.job_types:
            raise _unknown_producer(producer_id)
        return self._snapshot.list_job_types(producer_id, page_size, after)

    def check(self):
        if not (self.running and self._loaded):
            return succeed(False)
        d = self._call(self._probe)
        d.addCallbacks(self._probed, self._probe_failed)
        return d

    def _probe(self):
        """(In a thread.)  One listing request: GCS answers and lets Jack in."""
        self._count("probes")
        with self._library():
            blobs = self._client.list_blobs(
                self.bucket,
                prefix=self.prefix,
                max_results=1,
                fields="items(name),nextPageToken",
                **self._limits(),
            )
            for _ in blobs:
                pass
        return True

    def _probed(self, ok):
        self._refusal = None
        return ok

    def _probe_failed(self, failure):
        failure.trap(Unavailable, FailedPrecondition)
        if failure.check(FailedPrecondition) and str(failure.value) != self._refusal:
            self._refusal = str(failure.value)
            self._log.warn(
                "Health check of the config storage failed: {reason}",
                reason=self._refusal,
            )
        return False


def from_options(options, reactor, environ=None):
    """
    The store C{twistd jack}'s options configure (C{GCS_BUCKET} set).

    @param environ: the environment the client library reads
        (C{os.environ} unless given).
    @raise ConfigError: the bucket name, the prefix or
        C{STORAGE_EMULATOR_HOST} cannot work.
    """
    environ = os.environ if environ is None else environ
    check_emulator_host(environ.get("STORAGE_EMULATOR_HOST", ""))
    return GCSConfigStore(
        options["gcs-bucket"],
        options["gcs-prefix"],
        reactor=reactor,
        refresh_interval=options["gcs-refresh-interval"],
        negative_ttl=options["gcs-negative-ttl"],
        timeout=options["gcs-timeout"],
    )
