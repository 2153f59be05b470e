"""
Jobs whose ``run_at`` is in the future: held in an ``IScheduleStore`` and
published through the queue backend when due.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from jackd.timestamps import now_ns

# After a failed dispatch, wait this long (seconds) before the next try, one
# step further for each failure in a row.
RETRY_DELAYS = (1, 2, 4, 8, 15, 30)


class Scheduler(Service):
    """
    Holds future jobs in C{store} and publishes them through C{backend} no
    earlier than their ``run_at``, in batches, removing each from the store
    only once the backend confirmed it (at least once, never early).  A
    reactor timer wakes it at the earliest ``run_at`` held.

    @param store: an ``IScheduleStore``.
    @param backend: an ``IQueueBackend``.
    @param clock: an ``IReactorTime``.
    """

    _log = Logger()

    def __init__(self, store, backend, clock, batch_size=500):
        self._store = store
        self._backend = backend
        self._clock = clock
        self._batch_size = batch_size
        self._timer = None
        self._timer_at = None
        self._dispatching = None
        self._wake_requested = None
        self._failures = 0

    @property
    def store(self):
        return self._store

    def schedule(self, jobs) -> Deferred:
        """
        Hold C{jobs} (``jack.Job``s with a future ``run_at``) until due.

        @return: Deferred firing with a C{None} outcome per job (the
            ``IQueueBackend.publish`` shape) once the store holds them.
        """
        earliest = min(job.run_at.ToNanoseconds() for job in jobs)
        d = self._store.add(jobs)

        def held(_):
            self._wake_at(earliest)
            return [None] * len(jobs)

        d.addCallback(held)
        return d

    def startService(self):
        super().startService()
        self._log.info("Schedule store: {store}", store=self._store.description)
        if not self._store.durable:
            self._log.warn(
                "Scheduled jobs (future run_at) are held in memory: they are "
                "lost when Jack stops"
            )
        self._store.next_due().addCallback(self._wake_at)

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        self._cancel_timer()
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

    def _wake_at(self, at_ns):
        if at_ns is None or not self.running:
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
        Publish due jobs batch by batch until none is due.

        @return: Deferred firing with when to try again (ns), or C{None}.
        """
        try:
            while self.running:
                now = now_ns(self._clock)
                jobs = yield self._store.due(now, self._batch_size)
                if not jobs:
                    break
                outcomes = yield self._backend.publish(jobs)
                sent = [job.job_id for job, error in zip(jobs, outcomes) if error is None]
                if sent:
                    yield self._store.remove(sent)
                errors = [error for error in outcomes if error is not None]
                if errors:
                    return self._retry_later(len(errors), errors[0])
            self._failures = 0
            next_due = yield self._store.next_due()
            return next_due
        except Exception as error:
            self._log.failure("Dispatching scheduled jobs failed")
            return self._retry_later(None, error)

    def _retry_later(self, count, error):
        delay = RETRY_DELAYS[min(self._failures, len(RETRY_DELAYS) - 1)]
        self._failures += 1
        self._log.warn(
            "Could not publish {count} due scheduled job(s) ({error}); they "
            "stay held and are retried in {delay}s",
            count="some" if count is None else count,
            error=error,
            delay=delay,
        )
        return now_ns(self._clock) + delay * 1_000_000_000
