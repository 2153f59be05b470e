"""
The enqueue path: check a job against its producer and job type, give it an
id, and hand it to the queue backend, or to the scheduler when its ``run_at``
is in the future.  Deferred-based; nothing here knows about gRPC.
"""

from twisted.internet.defer import (
    Deferred,
    DeferredList,
    fail,
    gatherResults,
    maybeDeferred,
)
from twisted.python.failure import Failure

from jack.job_pb2 import Job
from jackd import validation
from jackd.timestamps import now_ns
from jackd.errors import InvalidArgument, JackError
from jackd.ids import JobIdGenerator


class Enqueuer:
    """
    Accepts jobs for delivery.

    @param store: an ``IConfigStore`` (job type lookups).
    @param backend: an ``IQueueBackend`` (jobs due now).
    @param scheduler: a ``jackd.scheduler.Scheduler`` (jobs due later).
    @param limits: a ``validation.Limits``.
    @param clock: an ``IReactorTime``.
    """

    def __init__(self, store, backend, scheduler, limits, clock):
        self._store = store
        self._backend = backend
        self._scheduler = scheduler
        self._limits = limits
        self._clock = clock
        self._ids = JobIdGenerator(clock)

    def enqueue(self, request) -> Deferred:
        """
        Accept one ``jack.EnqueueRequest``.

        @return: Deferred firing with the new job id once the job is accepted
            for delivery (the backend confirmed it, or the scheduler holds
            it), or failing with a ``JackError``.
        """
        try:
            self._check(request)
        except JackError:
            return fail()
        d = self._store.get_job_type(request.producer_id, request.job_type)
        d.addCallback(self._submit_one, request)
        return d

    def _submit_one(self, job_type, request):
        now = now_ns(self._clock)
        for_later = _is_for_later(request, now)
        job = _job_template(job_type, now)
        _fill_job(job, self._ids.new(), request, for_later)
        self._backend.validate(job)
        if for_later:
            d = self._scheduler.schedule([job])
        else:
            d = self._backend.publish([job])
        d.addCallback(_only_outcome, job.job_id)
        return d

    def enqueue_bulk(self, request) -> Deferred:
        """
        Accept the jobs of one ``jack.EnqueueBulkRequest``, each on its own:
        one bad job never fails the others.  Jobs due now are published in
        one backend call, jobs due later scheduled in one call.

        @return: Deferred firing with a list holding, for each job in request
            order, C{(job_id, None)} when it was accepted or C{("", error)}
            when it was not (a ``JackError``, or a ``Failure`` for a bug);
            failing with ``InvalidArgument`` when the request as a whole is
            empty or over the bulk limits.
        """
        try:
            self._check_bulk(request)
        except JackError:
            return fail()
        requests = request.jobs
        results = [None] * len(requests)
        lookups = {}
        pending = []
        for index, item in enumerate(requests):
            key = (item.producer_id, item.job_type)
            try:
                if key not in lookups:  # a key already looked up passed these
                    self._check_key(*key)
                self._check_item(item)
            except JackError as error:
                results[index] = ("", error)
                continue
            if key not in lookups:
                lookups[key] = maybeDeferred(self._store.get_job_type, *key)
            pending.append((index, item, key))
        keys = list(lookups)
        found = DeferredList([lookups[key] for key in keys], consumeErrors=True)
        found.addCallback(
            lambda outcomes: self._submit_bulk(
                results, pending, dict(zip(keys, outcomes))
            )
        )
        return found

    def _submit_bulk(self, results, pending, job_types):
        now = now_ns(self._clock)
        # What the jobs of one found job type share, built once per bulk.
        templates = {
            key: _job_template(job_type, now)
            for key, (ok, job_type) in job_types.items()
            if ok
        }
        found = []
        for index, item, key in pending:
            if key in templates:
                found.append((index, item, templates[key]))
            else:
                results[index] = ("", _error_of(job_types[key][1]))
        due, later = [], []
        for (index, item, template), job_id in zip(found, self._ids.new_many(len(found))):
            for_later = _is_for_later(item, now)
            job = Job()
            job.CopyFrom(template)
            _fill_job(job, job_id, item, for_later)
            try:
                self._backend.validate(job)
            except JackError as error:
                results[index] = ("", error)
                continue
            if for_later:
                later.append((index, job))
            else:
                due.append((index, job))
        steps = []
        for batch, hand_over in ((due, self._backend.publish), (later, self._scheduler.schedule)):
            if batch:
                d = maybeDeferred(hand_over, [job for _, job in batch])
                d.addCallbacks(
                    _record_outcomes,
                    _record_failure,
                    callbackArgs=(batch, results),
                    errbackArgs=(batch, results),
                )
                steps.append(d)
        d = gatherResults(steps)
        d.addCallback(lambda _: results)
        return d

    def _check(self, request) -> None:
        self._check_key(request.producer_id, request.job_type)
        self._check_item(request)

    def _check_key(self, producer_id, job_type) -> None:
        """The checks that depend only on the job's lookup key."""
        validation.check_id("producer_id", producer_id)
        validation.check_job_type_name("job_type", job_type)

    def _check_item(self, request) -> None:
        """The rest of L{_check}: payload, trace_id and run_at."""
        if len(request.payload) > self._limits.max_payload_bytes:
            raise InvalidArgument(
                "payload",
                f"is {len(request.payload)} bytes; at most "
                f"{self._limits.max_payload_bytes} bytes are allowed",
            )
        if len(request.trace_id.encode("utf-8")) > validation.MAX_TRACE_ID_BYTES:
            raise InvalidArgument(
                "trace_id", f"is longer than {validation.MAX_TRACE_ID_BYTES} bytes"
            )
        if request.HasField("run_at"):
            validation.check_timestamp("run_at", request.run_at)
            validation.check_schedule_ahead(
                "run_at", request.run_at.ToNanoseconds(), now_ns(self._clock),
                self._limits.max_schedule_ahead,
            )

    def _check_bulk(self, request) -> None:
        count = len(request.jobs)
        if not count:
            raise InvalidArgument("jobs", "must hold at least one job")
        if count > self._limits.max_bulk_jobs:
            raise InvalidArgument(
                "jobs",
                f"holds {count} jobs; at most {self._limits.max_bulk_jobs} "
                "are allowed per call",
            )
        size = request.ByteSize()
        if size > self._limits.max_bulk_bytes:
            raise InvalidArgument(
                "jobs",
                f"are {size} bytes encoded; at most {self._limits.max_bulk_bytes} "
                "bytes are allowed per call",
            )


def _job_template(job_type, now: int) -> Job:
    """
    A job of C{job_type} enqueued and due at C{now} (integer nanoseconds),
    without its own fields (L{_fill_job}).
    """
    # The Timestamp fields set directly, as FromNanoseconds would set them
    # (it re-checks a clock reading that is valid anyway).
    seconds, nanos = divmod(now, 1_000_000_000)
    job = Job(
        producer_id=job_type.producer_id,
        job_type=job_type.name,
        queue=job_type.queue,
        max_retries=job_type.max_retries,
    )
    enqueued_at, run_at = job.enqueued_at, job.run_at
    enqueued_at.seconds = run_at.seconds = seconds
    enqueued_at.nanos = run_at.nanos = nanos
    return job


def _fill_job(job, job_id: str, request, for_later: bool) -> None:
    """Set what C{job} takes from its id and its C{request}."""
    job.job_id = job_id
    job.payload = request.payload
    job.trace_id = request.trace_id
    if for_later:
        job.run_at.CopyFrom(request.run_at)


def _is_for_later(request, now: int) -> bool:
    """Whether the scheduler holds C{request}'s job: its run_at is after now."""
    return request.HasField("run_at") and request.run_at.ToNanoseconds() > now


def _only_outcome(outcomes, job_id):
    [error] = outcomes
    if error is not None:
        raise error
    return job_id


def _record_outcomes(outcomes, batch, results):
    for (index, job), error in zip(batch, outcomes):
        results[index] = ("", error) if error is not None else (job.job_id, None)


def _record_failure(failure, batch, results):
    """
    A hand-over that failed as a whole fails each of its jobs, and only
    those: the other batch of the same bulk may already be accepted.
    """
    error = _error_of(failure)
    for index, _ in batch:
        results[index] = ("", error)


def _error_of(failure: Failure):
    """A lookup's ``JackError``, or the ``Failure`` itself for a bug."""
    if failure.check(JackError):
        return failure.value
    return failure
