"""
The noop queue backend: the development default.  It accepts every job,
delivers none, and logs what it accepted so a developer can see it.
"""

from twisted.application.service import Service
from twisted.internet.defer import succeed
from twisted.logger import Logger
from zope.interface import implementer

from jack.job_pb2 import Queue
from jackd.interfaces import IQueueBackend

# A bulk of 1000 jobs logs this many of them, then how many more there were.
LOGGED_JOBS_PER_CALL = 10

# Under load, one log event per publish would cost more than the rest of the
# enqueue path (a formatted, flushed line each): the first publish after a
# quiet spell is logged at once, and those that follow within this many
# seconds are summed up in one event at its end.
SUMMARY_INTERVAL = 1.0


def queue_name(queue: int) -> str:
    """``QUEUE_HIGH`` -> ``high``."""
    return Queue.Name(queue).removeprefix("QUEUE_").lower()


@implementer(IQueueBackend)
class NoopBackend(Service):
    """
    @param clock: an ``IReactorTime`` for the summary window (the global
        reactor when C{None}).
    """

    _log = Logger()

    description = "noop (accepts jobs, delivers none)"

    def __init__(self, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self._clock = clock
        self._window = None  # the summary's timer while a window is open
        self._reset()

    def _reset(self):
        self._held_jobs = 0
        self._held_calls = 0
        self._held_shown = []

    def startService(self):
        super().startService()
        self._log.warn(
            "Queue backend is noop: accepted jobs are logged and never delivered"
        )

    def validate(self, job):
        """Any job goes: nothing is delivered."""

    def publish(self, jobs):
        if self._window is None:
            self._log_accepted(jobs)
            self._window = self._clock.callLater(SUMMARY_INTERVAL, self._summarize)
        else:
            self._held_jobs += len(jobs)
            self._held_calls += 1
            room = LOGGED_JOBS_PER_CALL - len(self._held_shown)
            if room > 0:
                self._held_shown.extend(_described(jobs[:room]))
        return succeed([None] * len(jobs))

    def _log_accepted(self, jobs):
        shown = _described(jobs[:LOGGED_JOBS_PER_CALL])
        unlisted = len(jobs) - len(shown)
        self._log.info(
            "noop backend accepted {count} job(s), delivering none: {jobs}"
            + (" and {unlisted} more" if unlisted else ""),
            count=len(jobs),
            jobs=shown,
            unlisted=unlisted,
        )

    def _summarize(self, reopen=True):
        """
        Log the jobs accepted since the window opened; keep a window open
        while jobs keep coming, so a steady load logs once per interval.
        """
        self._window = None
        if not self._held_jobs:
            return
        unlisted = self._held_jobs - len(self._held_shown)
        self._log.info(
            "noop backend accepted {count} more job(s) in {calls} call(s) in the "
            "last {interval}s, delivering none: {jobs}"
            + (" and {unlisted} more" if unlisted else ""),
            count=self._held_jobs,
            calls=self._held_calls,
            interval=SUMMARY_INTERVAL,
            jobs=self._held_shown,
            unlisted=unlisted,
        )
        self._reset()
        if reopen:
            self._window = self._clock.callLater(SUMMARY_INTERVAL, self._summarize)

    def stopService(self):
        super().stopService()
        if self._window is not None:
            self._window.cancel()
            self._summarize(reopen=False)

    def check(self):
        return succeed(True)


def from_options(options, reactor):
    """The backend for ``QUEUE_BACKEND=noop``."""
    return NoopBackend(reactor)


def _described(jobs):
    return [
        {
            "job_id": job.job_id,
            "producer_id": job.producer_id,
            "job_type": job.job_type,
            "queue": queue_name(job.queue),
        }
        for job in jobs
    ]
