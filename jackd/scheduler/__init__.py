"""
Jobs whose ``run_at`` is in the future: held in an ``IScheduleStore`` and
published through the queue backend when due.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from jack.job_pb2 import Queue
from jackd.errors import ConfigError, JackError, ResourceExhausted, Unavailable
from jackd.timestamps import now_ns

# After a dispatch in which jobs could not be published, wait this long
# (seconds) before they are tried again, one step further for each such
# dispatch in a row.
RETRY_DELAYS = (1, 2, 4, 8, 15, 30)

# Refusals that may pass: the job is tried again later.  Any other
# ``JackError`` (INVALID_ARGUMENT: the broker will never take this job) is
# permanent: the job is logged and dropped.
RETRYABLE = (Unavailable, ResourceExhausted)

SECOND = 1_000_000_000


class Scheduler(Service):
    """
    Holds future jobs in C{store} and publishes them through C{backend} no
    earlier than their ``run_at``, in batches, removing each from the store
    only once the backend confirmed it (at least once, never early).

    A dispatch claims due jobs batch by batch (a lease of C{lease} seconds:
    replicas sharing the store do not claim the same job, and the jobs of a
    replica that dies mid-dispatch are claimed by another when the lease
    runs out), publishes each batch, removes the jobs the backend accepted
    or refused for good, and releases those refused for now (``RETRYABLE``,
    or a batch that failed as a whole) to be retried after a backoff.  A
    failed batch does not stop the dispatch: the batches behind it go on.

    A reactor timer wakes the dispatcher at the earliest time a held job is
    due, and at least every C{poll_interval} seconds (when set) to find jobs
    that other replicas hold or left behind.

    @param store: an ``IScheduleStore``.
    @param backend: an ``IQueueBackend``.
    @param clock: an ``IReactorTime``.
    @param batch_size: the most jobs claimed and published at once.
    @param lease: seconds a claim lasts; longer than a publish can take.
    @param poll_interval: seconds between looks at the store when no timer
        is due sooner, or C{None} for none (one Jack on its own store).
    @param stats_interval: seconds between "jobs held" log events, or
        C{None} for none.
    """

    _log = Logger()

    def __init__(
        self, store, backend, clock, batch_size=100, lease=60.0,
        poll_interval=None, stats_interval=None,
    ):
        self._store = store
        self._backend = backend
        self._clock = clock
        self._batch_size = batch_size
        self._lease_ns = int(lease * SECOND)
        self._poll_ns = None if poll_interval is None else int(poll_interval * SECOND)
        self._stats_interval = stats_interval
        self._stats_loop = None
        self._timer = None
        self._timer_at = None
        self._opening = None
        self._dispatching = None
        self._wake_requested = None
        self._failures = 0
        self._published = 0
        self._dropped = 0

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
            d = self._store.earliest_run_at()
            d.addCallback(lambda earliest: self._stats(held, earliest))
            return d

        d.addCallback(with_earliest)
        return d

    def _stats(self, held, earliest):
        late = 0 if earliest is None else max(0, now_ns(self._clock) - earliest)
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
        if self._stats_interval is not None:
            self._stats_loop = LoopingCall(self._log_stats)
            self._stats_loop.clock = self._clock
            self._stats_loop.start(self._stats_interval, now=False)
        self._wake_at(now_ns(self._clock))

    def _open_failed(self, failure):
        self._opening = None
        failure.trap(Unavailable)
        raise ConfigError(f"cannot open the {failure.value}")

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._stats_loop is not None and self._stats_loop.running:
            self._stats_loop.stop()
        self._cancel_timer()
        if self._opening is not None:
            yield _settled(self._opening)
        if self._dispatching is not None:
            yield self._dispatching
        if not self._store.durable:
            held = yield self._store.count()
            if held:
                self._log.warn(
                    "Dropping {count} scheduled job(s) held in memory: they "
                    "were not due yet and are not published",
                    count=held,
                )
        yield self._store.close()

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
        Claim, publish and settle due jobs batch by batch until none is
        claimable.

        @return: Deferred firing with when to look again (ns): when the
            next held job is due or the next poll, whichever is sooner, or
            after a backoff when the store failed; C{None} for never.
        """
        retry_delay = None
        try:
            while self.running:
                now = now_ns(self._clock)
                jobs = yield self._store.claim(now, self._batch_size, now + self._lease_ns)
                if not jobs:
                    break
                outcomes = yield self._publish(jobs)
                done, retry = self._sort(jobs, outcomes)
                if done:
                    yield self._store.remove(done)
                if retry:
                    if retry_delay is None:
                        retry_delay = self._next_delay()
                    yield self._store.release(
                        [job.job_id for job, _ in retry], now_ns(self._clock) + retry_delay * SECOND
                    )
                    self._log_retry(retry, retry_delay)
                if len(jobs) < self._batch_size:
                    break
            if retry_delay is None:
                self._failures = 0
            next_due = yield self._store.next_due()
            if self._poll_ns is None:
                return next_due
            poll = now_ns(self._clock) + self._poll_ns
            return poll if next_due is None else min(next_due, poll)
        except Exception:  # noqa: BLE001 (logged; the dispatcher must go on)
            delay = self._next_delay()
            self._log.failure(
                "Dispatching scheduled jobs failed; trying again in {delay}s "
                "(claimed jobs are claimed again when their lease ends)",
                delay=delay,
            )
            return now_ns(self._clock) + delay * SECOND

    def _publish(self, jobs):
        """
        The backend's outcome for each job; a publish that failed as a
        whole is the same retryable error for each.
        """
        d = maybeDeferred(self._backend.publish, jobs)

        def failed(failure):
            self._log.failure(
                "Publishing {count} due scheduled job(s) failed as a whole",
                failure, count=len(jobs),
            )
            return [failure] * len(jobs)

        d.addErrback(failed)
        return d

    def _sort(self, jobs, outcomes):
        """
        @return: the ids of the jobs done with (published, or refused for
            good and dropped), and C{(job, error)} for those to retry.
        """
        done, retry = [], []
        for job, error in zip(jobs, outcomes):
            if error is None:
                self._published += 1
                done.append(job.job_id)
            elif isinstance(error, JackError) and not isinstance(error, RETRYABLE):
                self._drop(job, error)
                done.append(job.job_id)
            else:
                retry.append((job, error))
        return done, retry

    def _drop(self, job, error):
        self._dropped += 1
        self._log.error(
            "Dropping scheduled job {job_id} (producer {producer_id}, job type "
            "{job_type}, queue {queue}, run_at {run_at}): the queue backend "
            "refused it for good ({code}: {error}); it will not be delivered",
            job_id=job.job_id,
            producer_id=job.producer_id,
            job_type=job.job_type,
            queue=Queue.Name(job.queue),
            run_at=job.run_at.ToJsonString(),
            code=error.code,
            error=str(error),
        )

    def _next_delay(self):
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        return delay

    def _log_retry(self, retry, delay):
        job, error = retry[0]
        if isinstance(error, Failure):
            error = error.value
        self._log.warn(
            "Could not publish {count} due scheduled job(s) (first: {job_id}: "
            "{error}); they stay held and are retried in {delay}s",
            count=len(retry),
            job_id=job.job_id,
            error=str(error),
            delay=delay,
        )


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
