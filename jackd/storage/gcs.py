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

Names and ids are percent-encoded in keys: the UTF-8 bytes of every
character but ``A-Z a-z 0-9 - _ ~`` become ``%XX`` (so ``/``, ``%`` and
``.`` never reach a key as themselves).

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
so a flood of unknown ids does not turn into a flood of GCS requests.  While
GCS cannot be reached, everything in the snapshot keeps serving, writes and
lookups of unknown records answer ``Unavailable`` and ``check`` says
C{False}; all of it recovers by itself.

google-cloud-storage blocks, so its calls run in a thread pool of the
store's own; results come back to the reactor thread, which alone touches
the snapshot.
"""

import bisect
import contextlib
import re
import threading
import time
import uuid
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from functools import wraps
from urllib.parse import quote

from google.protobuf import json_format
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
from jackd.errors import AlreadyExists, ConfigError, JackError, NotFound, Unavailable
from jackd.interfaces import IConfigStore

PRODUCERS = "producers/"
CLAIMS = "producer-names/"
JOB_TYPES = "job-types/"
SUFFIX = ".json"

PRODUCER, CLAIM, JOB_TYPE = "producer", "claim", "job type"

CONTENT_TYPE = "application/json; charset=utf-8"
# Custom metadata naming the write that created an object, so that a
# create-only upload retried after a lost answer knows its own object.
WRITE_ID = "jack-write-id"

MAX_KEY_BYTES = 1024  # GCS's limit on object names
MAX_PREFIX_BYTES = 200  # leaves room for the longest key Jack makes
LIST_PAGE_SIZE = 1000  # GCS's largest listing page


def encode_name(text: str) -> str:
    """
    One segment of an object key for C{text} (a name or an id): the UTF-8
    bytes of every character but C{A-Z a-z 0-9 - _ ~} as C{%XX}.  No two
    texts share a segment, and none holds C{/} or C{.}.
    """
    return quote(text, safe="").replace(".", "%2E")


def normalize_prefix(prefix: str) -> str:
    """C{prefix} as a folder: with a trailing C{/} unless empty."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


def check_prefix(prefix: str) -> None:
    """
    @raise ConfigError: C{prefix} leaves too little of GCS's 1024 bytes
        of object name for Jack's keys.
    """
    size = len(normalize_prefix(prefix).encode("utf-8"))
    if size > MAX_PREFIX_BYTES:
        raise ConfigError(
            f"GCS_PREFIX is {size} bytes long; at most {MAX_PREFIX_BYTES} are allowed"
        )


def to_json(message, every_field=True) -> bytes:
    """
    C{message} in protobuf's JSON mapping, indented, UTF-8; with
    C{every_field}, fields at their default value are written too, so an
    operator sees them all.
    """
    text = json_format.MessageToJson(
        message,
        indent=2,
        ensure_ascii=False,
        always_print_fields_with_no_presence=every_field,
    )
    return (text + "\n").encode("utf-8")


class Layout:
    """
    Where each record lives under a prefix.
    """

    def __init__(self, prefix: str):
        self.prefix = normalize_prefix(prefix)

    def producer(self, producer_id: str) -> str:
        return f"{self.prefix}{PRODUCERS}{encode_name(producer_id)}{SUFFIX}"

    def claim(self, name: str) -> str:
        return f"{self.prefix}{CLAIMS}{encode_name(name)}{SUFFIX}"

    def job_type(self, producer_id: str, name: str) -> str:
        return (
            f"{self.prefix}{JOB_TYPES}{encode_name(producer_id)}/"
            f"{encode_name(name)}{SUFFIX}"
        )

    def kind(self, key: str):
        """
        @return: L{PRODUCER}, L{CLAIM} or L{JOB_TYPE} for a key of that
            shape, C{None} for any other object under the prefix.
        """
        if not (key.startswith(self.prefix) and key.endswith(SUFFIX)):
            return None
        rest = key[len(self.prefix) : -len(SUFFIX)]
        for kind, folder, slashes in (
            (PRODUCER, PRODUCERS, 0),
            (CLAIM, CLAIMS, 0),
            (JOB_TYPE, JOB_TYPES, 1),
        ):
            if rest.startswith(folder) and rest[len(folder) :].count("/") == slashes:
                return kind
        return None

    def key_of(self, kind, record) -> str:
        """The key at which C{record} of C{kind} belongs."""
        if kind == PRODUCER:
            return self.producer(record.producer_id)
        if kind == CLAIM:
            return self.claim(record.name)
        return self.job_type(record.producer_id, record.name)

    def parse(self, key: str, kind: str, data: bytes):
        """
        The record the object at C{key} holds.

        @raise ValueError: it is not JSON of a record of C{kind}, or not
            the record that belongs at C{key}.
        """
        record = JobType() if kind == JOB_TYPE else Producer()
        try:
            json_format.Parse(data.decode("utf-8"), record, ignore_unknown_fields=True)
        except (UnicodeDecodeError, json_format.ParseError) as error:
            raise ValueError(f"not a {kind} in protobuf's JSON mapping: {error}") from None
        expected = self.key_of(kind, record)
        if expected != key:
            raise ValueError(f"holds the {kind} that belongs at {expected}")
        return record


# One object of the bucket as the snapshot knows it: its generation, its
# kind, the record it holds (None when it holds none: problem says why).
StoredObject = namedtuple("StoredObject", "generation kind record problem")


def _page(names, lookup, page_size, after):
    start = 0 if after is None else bisect.bisect_right(names, after)
    chosen = names[start : start + page_size]
    return [lookup(name) for name in chosen], start + page_size < len(names)


class Snapshot:
    """
    The producers and job types the objects of a bucket make, indexed for
    lookups and name-ordered paging.  Touched on the reactor thread only.
    """

    def __init__(self):
        self.producers = {}  # producer_id -> Producer
        self.ids_by_name = {}  # name -> producer_id
        self.names = []  # sorted producer names
        self.job_types = {}  # producer_id -> {name: JobType}
        self.job_type_names = {}  # producer_id -> sorted names
        self.dangling_claims = []  # keys of claims naming no record

    @classmethod
    def build(cls, objects: dict, layout: Layout) -> "Snapshot":
        """
        A snapshot of C{objects} (C{{key: StoredObject}}): a producer is in
        it when the claim on its name names its record; a job type when its
        producer is.
        """
        records, claims, job_types = {}, {}, []
        for key, stored in objects.items():
            if stored.record is None:
                continue
            if stored.kind == PRODUCER:
                records[stored.record.producer_id] = stored.record
            elif stored.kind == CLAIM:
                claims[key] = stored.record
            else:
                job_types.append(stored.record)
        snapshot = cls()
        for key, claim in claims.items():
            producer = records.get(claim.producer_id)
            if producer is None or producer.name != claim.name:
                snapshot.dangling_claims.append(key)
                continue
            snapshot.producers[producer.producer_id] = producer
            snapshot.ids_by_name[producer.name] = producer.producer_id
            snapshot.job_types[producer.producer_id] = {}
        for job_type in job_types:
            types = snapshot.job_types.get(job_type.producer_id)
            if types is not None:
                types[job_type.name] = job_type
        snapshot.names = sorted(snapshot.ids_by_name)
        snapshot.job_type_names = {
            producer_id: sorted(types) for producer_id, types in snapshot.job_types.items()
        }
        return snapshot

    def add_producer(self, producer):
        if producer.producer_id in self.producers or producer.name in self.ids_by_name:
            return
        self.producers[producer.producer_id] = producer
        self.ids_by_name[producer.name] = producer.producer_id
        bisect.insort(self.names, producer.name)
        self.job_types[producer.producer_id] = {}
        self.job_type_names[producer.producer_id] = []

    def add_job_type(self, job_type):
        types = self.job_types.get(job_type.producer_id)
        if types is None or job_type.name in types:
            return
        types[job_type.name] = job_type
        bisect.insort(self.job_type_names[job_type.producer_id], job_type.name)

    def list_producers(self, page_size, after):
        lookup = lambda name: self.producers[self.ids_by_name[name]]
        return _page(self.names, lookup, page_size, after)

    def list_job_types(self, producer_id, page_size, after):
        types = self.job_types[producer_id]
        return _page(self.job_type_names[producer_id], types.__getitem__, page_size, after)

    def counts(self):
        return len(self.producers), sum(len(types) for types in self.job_types.values())


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


class _GCSFailure(Exception):
    """GCS could not be used; the message says why, in one line."""


_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _short(error) -> str:
    """The gist of a transport error: '[Errno 111] Connection refused'."""
    text = str(error)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    if "timed out" in text.lower():
        return "timed out"
    return _first_line(error)


def _first_line(error, limit=200) -> str:
    text = (getattr(error, "message", None) or str(error) or type(error).__name__).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_gcs_error(error, bucket, endpoint, timeout) -> str:
    """
    One line for the operator saying why GCS could not be used, or C{None}
    for an exception that is not about GCS (a bug).
    """
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from requests import exceptions as http

    if isinstance(error, api.RetryError):
        cause = error.cause if error.cause is not None else error
        return f"no answer from {endpoint} within {timeout:g}s ({_short(cause)})"
    if isinstance(error, api.NotFound):
        return f"bucket {bucket!r} does not exist at {endpoint}"
    if isinstance(error, api.Forbidden):
        return f"access to bucket {bucket!r} denied at {endpoint}: {_first_line(error)}"
    if isinstance(error, api.Unauthorized):
        return f"credentials refused at {endpoint}: {_first_line(error)}"
    if isinstance(error, api.GoogleAPICallError):
        return f"{endpoint} answered {error.code}: {_first_line(error)}"
    if isinstance(error, http.RequestException):
        return f"cannot reach {endpoint} ({_short(error)})"
    if isinstance(error, auth.DefaultCredentialsError):
        return f"no usable Google credentials: {_first_line(error)}"
    if isinstance(error, auth.GoogleAuthError):
        return f"cannot get a Google access token: {_short(error)}"
    return None


def _blocking(method):
    """
    Mark a method that runs in a pool thread and talks to GCS: errors about
    GCS become L{_GCSFailure}s with one line saying why.
    """

    @wraps(method)
    def translated(self, *args):
        try:
            return method(self, *args)
        except JackError:
            raise
        except Exception as error:
            reason = describe_gcs_error(
                error, self.bucket, self._endpoint(), self._timeout
            )
            if reason is None:
                raise
            raise _GCSFailure(reason) from None

    return translated


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
    @param reactor: the reactor results come back to from threads.
    @param clock: an ``IReactorTime`` for the refresh loop and the negative
        cache (the reactor unless given).
    @param refresh_interval: seconds between background refreshes.
    @param negative_ttl: seconds an answer "GCS does not have it" is reused
        (0: never).
    @param timeout: seconds one GCS call may take, retries included.
    @param client_factory: makes the ``google.cloud.storage.Client``
        (called in a thread at start, after twistd forks).
    @param list_page_size: objects per listing page.
    @ivar stats: counts of GCS requests and lookups, for operators (the
        manhole) and tests.
    """

    _log = Logger()

    THREADS = 4  # pool threads: writes, lookups, one refresh, checks
    FANOUT = 6  # parallel downloads within one refresh (4 + 6 <= the HTTP pool's 10)
    MAX_LOOKUPS = 16  # lookups in flight at once; beyond, misses answer NOT_FOUND
    MAX_ABSENT = 10_000  # entries of the negative cache

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
        self._client = None
        self._bucket = None
        self._retry = None
        self._loop = None
        self._refresh_lock = DeferredLock()
        self._in_flight = 0
        self._idle = []  # Deferreds fired when nothing is in flight

        self._objects = {}  # key -> StoredObject
        self._snapshot = Snapshot()
        self._seq = 0  # counts local writes and lookups
        self._written = {}  # key -> seq of the local write or lookup
        self._loaded = False
        self._reachable = True
        self._lookups = {}  # key -> [Deferred] waiting for one GCS lookup
        self._absent = {}  # key -> time until which GCS is known not to have it

        self._stats_lock = threading.Lock()
        self.stats = dict.fromkeys(
            ["list_pages", "downloads", "uploads", "lookups", "lookups_shed", "probes"], 0
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

        self._pool.start()
        began = time.monotonic()
        try:
            # Made here, in a thread: twistd has forked already, and
            # finding credentials may block on the network.
            self._client = yield deferToThreadPool(
                self._reactor, self._pool, self._client_factory
            )
            self._bucket = self._client.bucket(self.bucket)
            self._retry = DEFAULT_RETRY.with_timeout(self._timeout).with_delay(
                initial=0.1, maximum=1.0
            )
            downloads = self.stats["downloads"]
            yield self._refresh_lock.run(self._refresh_once, untranslated=True)
        except _GCSFailure as error:
            raise ConfigError(f"GCS: {error}") from None
        except Exception as error:
            reason = describe_gcs_error(error, self.bucket, self._endpoint(), self._timeout)
            if reason is None:
                raise
            raise ConfigError(f"GCS: {reason}") from None
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

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._in_flight:
            idle = Deferred()
            self._idle.append(idle)
            yield idle
        if self._client is not None:
            self._client.close()
        if self._pool.started:
            self._pool.stop()

    # Calls into the pool.

    def _call(self, method, *args, untranslated=False):
        """
        Run C{method(*args)} in the pool.

        @return: Deferred firing with its result; failing with
            ``Unavailable`` when GCS could not be used (or with the
            L{_GCSFailure} itself when C{untranslated}).
        """
        if not self._pool.started:
            return fail(Unavailable("config storage (GCS) is not running"))
        self._in_flight += 1
        d = deferToThreadPool(self._reactor, self._pool, method, *args)
        d.addBoth(self._call_done)
        d.addCallbacks(self._answered, self._call_failed, errbackArgs=(untranslated,))
        return d

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
        if failure.check(_GCSFailure):
            self._set_reachable(False, str(failure.value))
            if untranslated:
                return failure
            raise Unavailable(f"config storage (GCS) unavailable: {failure.value}")
        if failure.check(JackError):
            self._set_reachable(True)
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

    # Refreshing the snapshot.

    def refresh(self):
        """
        Bring the snapshot up to date with the bucket: list every object
        under the prefix (page by page) and download only those that are
        new or whose generation changed.

        @return: Deferred firing with C{None}; failing with ``Unavailable``.
        """
        return self._refresh_lock.run(self._refresh_once)

    def _refresh_once(self, untranslated=False):
        since = self._seq
        known = {key: stored.generation for key, stored in self._objects.items()}
        d = self._call(self._scan, known, untranslated=untranslated)
        d.addCallback(self._apply_scan, since)
        return d

    def _refresh_quietly(self):
        """A background refresh: GCS going away is logged once, by L{_set_reachable}."""
        d = self.refresh()
        d.addErrback(_false_when_unavailable)
        d.addErrback(lambda failure: self._log.failure("Refreshing the snapshot failed", failure))
        return d

    @_blocking
    def _scan(self, known):
        """
        (In a thread.)  List the prefix and download what C{known} (key to
        generation) lacks.

        @return: C{(listed, fetched)}: the generation of every object
            listed, and a L{StoredObject} (or C{None}: gone since listed)
            for each object downloaded.
        """
        listed = {}
        pages = self._client.list_blobs(
            self.bucket,
            prefix=self.prefix,
            page_size=self._page_size,
            fields="items(name,generation),nextPageToken",
            timeout=self._timeout,
            retry=self._retry,
        ).pages
        for page in pages:
            self._count("list_pages")
            for blob in page:
                listed[blob.name] = blob.generation
        wanted = [
            (key, generation)
            for key, generation in listed.items()
            if self._layout.kind(key) is not None and known.get(key) != generation
        ]
        fetched = {}
        if wanted:
            workers = min(self.FANOUT, len(wanted))
            with ThreadPoolExecutor(workers, thread_name_prefix="jack-gcs-fetch") as pool:
                results = pool.map(lambda item: self._fetch(*item), wanted)
                for (key, _), stored in zip(wanted, results):
                    fetched[key] = stored
        return listed, fetched

    def _fetch(self, key, generation=None):
        """
        (In a thread.)  Download one object (that C{generation} of it).

        @return: a L{StoredObject}, or C{None} when there is no such object.
        """
        from google.api_core.exceptions import NotFound as Missing

        blob = self._bucket.blob(key, generation=generation)
        self._count("downloads")
        try:
            data = blob.download_as_bytes(timeout=self._timeout, retry=self._retry)
        except Missing:
            return None
        kind = self._layout.kind(key)
        try:
            record, problem = self._layout.parse(key, kind, data), None
        except ValueError as error:
            record, problem = None, str(error)
        return StoredObject(blob.generation, kind, record, problem)

    def _apply_scan(self, scanned, since):
        """
        Swap in what a scan found.  Objects this replica wrote or looked up
        after the scan began stay, though the listing may predate them.
        """
        listed, fetched = scanned
        objects, changed = {}, False
        for key, generation in listed.items():
            if key in fetched:
                stored = fetched[key]
                if stored is not None:
                    objects[key] = stored
                    if stored.problem:
                        self._log.warn(
                            "Ignoring gs://{bucket}/{key}: {problem}",
                            bucket=self.bucket,
                            key=key,
                            problem=stored.problem,
                        )
                changed = True
                continue
            stored = self._objects.get(key)
            if stored is not None and stored.generation == generation:
                objects[key] = stored
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

    def _remember(self, entries):
        """
        Add objects this replica wrote or looked up (C{(key, StoredObject)}
        pairs) to the snapshot.
        """
        self._seq += 1
        for key, stored in entries:
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
        thread, returning C{(key, StoredObject)} pairs, the record wanted
        first, or C{None}).  Lookups of one C{key} in flight at once share
        one request; an absent answer is reused for C{negative_ttl}.

        @return: Deferred firing with the record, or C{None} when GCS does
            not have it; failing with ``Unavailable`` when GCS is known to
            be unreachable.
        """
        now = self._clock.seconds()
        until = self._absent.get(key)
        if until is not None:
            if now < until:
                return succeed(None)
            del self._absent[key]
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
                self._count("lookups_shed")
                return succeed(None)
            waiting = self._lookups[key] = []
            self._count("lookups")
            d = self._call(method, *args)
            d.addBoth(self._looked_up, key)
        mine = Deferred()
        waiting.append(mine)
        return mine

    def _looked_up(self, result, key):
        waiting = self._lookups.pop(key)
        if isinstance(result, Failure):
            for d in waiting:
                d.errback(result)
            return
        if result is None:
            if self._negative_ttl > 0:
                self._absent.pop(key, None)
                self._absent[key] = self._clock.seconds() + self._negative_ttl
                if len(self._absent) > self.MAX_ABSENT:
                    del self._absent[next(iter(self._absent))]
            record = None
        else:
            self._remember(result)
            record = result[0][1].record
        for d in waiting:
            d.callback(record)

    @_blocking
    def _fetch_producer(self, producer_id):
        """
        (In a thread.)  A producer's record and the claim on its name, when
        both are there and agree.
        """
        record_key = self._layout.producer(producer_id)
        if len(record_key.encode("utf-8")) > MAX_KEY_BYTES:
            return None
        record = self._fetch(record_key)
        if record is None or record.record is None:
            return None
        claim_key = self._layout.claim(record.record.name)
        claim = self._fetch(claim_key)
        if claim is None or claim.record is None or claim.record.producer_id != producer_id:
            return None  # a record no claim names: a create that never finished
        return [(record_key, record), (claim_key, claim)]

    @_blocking
    def _fetch_job_type(self, producer_id, name):
        """(In a thread.)  One job type's object."""
        key = self._layout.job_type(producer_id, name)
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            return None
        stored = self._fetch(key)
        if stored is None or stored.record is None:
            return None
        return [(key, stored)]

    def _known_producer(self, producer_id):
        """
        @return: Deferred firing with the producer, from the snapshot or
            else from GCS; failing with ``NotFound`` or ``Unavailable``.
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
        """
        from google.api_core.exceptions import PreconditionFailed

        token = token or uuid.uuid4().hex
        blob = self._bucket.blob(key)
        blob.metadata = {WRITE_ID: token}
        self._count("uploads")
        try:
            blob.upload_from_string(
                data,
                content_type=CONTENT_TYPE,
                if_generation_match=0,
                timeout=self._timeout,
                retry=self._retry,
            )
            return blob.generation
        except PreconditionFailed:
            pass
        # Taken: by another call, or by an earlier attempt of this one
        # whose answer was lost (the client retries uploads).
        existing = self._bucket.get_blob(key, timeout=self._timeout, retry=self._retry)
        if existing is not None and (existing.metadata or {}).get(WRITE_ID) == token:
            return existing.generation
        return None

    def _delete_quietly(self, key):
        """
        (In a thread.)  Delete C{key}, if GCS lets us: what stays behind is
        a record no claim names, which readers ignore.
        """
        from google.api_core.exceptions import GoogleAPICallError, RetryError
        from requests import RequestException

        with contextlib.suppress(GoogleAPICallError, RetryError, RequestException):
            self._bucket.blob(key).delete(timeout=self._timeout, retry=self._retry)

    @_blocking
    def _write_producer(self, producer):
        """
        (In a thread.)  The record first, then the claim on the name: a
        crash between the two leaves a record no claim names, which
        readers ignore.  A claim lost to another producer takes the record
        back.
        """
        record_key = self._layout.producer(producer.producer_id)
        claim = Producer(producer_id=producer.producer_id, name=producer.name)
        claim_key = self._layout.claim(producer.name)
        record_generation = self._create_object(record_key, to_json(producer))
        if record_generation is None:
            raise AlreadyExists(f"producer_id: {producer.producer_id!r} is taken")
        claim_generation = self._create_object(claim_key, to_json(claim, every_field=False))
        if claim_generation is None:
            self._delete_quietly(record_key)
            raise _name_taken(producer.name)
        return [
            (record_key, StoredObject(record_generation, PRODUCER, producer, None)),
            (claim_key, StoredObject(claim_generation, CLAIM, claim, None)),
        ]

    @_blocking
    def _write_job_type(self, job_type):
        """(In a thread.)  One create-only object."""
        key = self._layout.job_type(job_type.producer_id, job_type.name)
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
        d = self._call(self._write_producer, stored)
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
        d = self._call(self._write_job_type, job_type)
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
        d.addErrback(_false_when_unavailable)
        return d

    @_blocking
    def _probe(self):
        """(In a thread.)  One listing request: GCS answers and lets Jack in."""
        self._count("probes")
        blobs = self._client.list_blobs(
            self.bucket,
            prefix=self.prefix,
            max_results=1,
            fields="items(name),nextPageToken",
            timeout=self._timeout,
            retry=self._retry,
        )
        for _ in blobs:
            pass
        return True


def _false_when_unavailable(failure):
    failure.trap(Unavailable)
    return False


def from_options(options, reactor):
    """The store C{twistd jack}'s options configure (C{GCS_BUCKET} set)."""
    return GCSConfigStore(
        options["gcs-bucket"],
        options["gcs-prefix"],
        reactor=reactor,
        refresh_interval=options["gcs-refresh-interval"],
        negative_ttl=options["gcs-negative-ttl"],
        timeout=options["gcs-timeout"],
    )
