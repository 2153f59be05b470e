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


def queue_name(queue: int) -> str:
    """``QUEUE_HIGH`` -> ``high``."""
    return Queue.Name(queue).removeprefix("QUEUE_").lower()


@implementer(IQueueBackend)
class NoopBackend(Service):
    _log = Logger()

    description = "noop (accepts jobs, delivers none)"

    def startService(self):
        super().startService()
        self._log.warn(
            "Queue backend is noop: accepted jobs are logged and never delivered"
        )

    def validate(self, job):
        """Any job goes: nothing is delivered."""

    def publish(self, jobs):
        shown = [
            {
                "job_id": job.job_id,
                "producer_id": job.producer_id,
                "job_type": job.job_type,
                "queue": queue_name(job.queue),
            }
            for job in jobs[:LOGGED_JOBS_PER_CALL]
        ]
        unlisted = len(jobs) - len(shown)
        self._log.info(
            "noop backend accepted {count} job(s), delivering none: {jobs}"
            + (" and {unlisted} more" if unlisted else ""),
            count=len(jobs),
            jobs=shown,
            unlisted=unlisted,
        )
        return succeed([None] * len(jobs))

    def check(self):
        return succeed(True)


def from_options(options, reactor):
    """The backend for ``QUEUE_BACKEND=noop``."""
    return NoopBackend()
