"""
A schedule store in this process's memory: the development default.  Held
jobs are lost when Jack stops.
"""

import bisect

from twisted.internet.defer import succeed
from zope.interface import implementer

from jackd.errors import ConfigError
from jackd.interfaces import IScheduleStore


def from_options(options, reactor):
    """
    The memory store, for C{SCHEDULE_STORE=memory}.

    @raise ConfigError: C{SCHEDULE_DB} is set: the operator meant a durable
        store, and holding jobs in memory instead would lose them.
    """
    if options["schedule-db"]:
        raise ConfigError(
            "SCHEDULE_DB is set but SCHEDULE_STORE is memory: set "
            "SCHEDULE_STORE=sqlite or postgres (or unset SCHEDULE_DB)"
        )
    return MemoryScheduleStore()


@implementer(IScheduleStore)
class MemoryScheduleStore:
    """
    Jobs in a list sorted by when each becomes claimable, then by id.  One
    process, one store: a claim only keeps a job from being claimed again
    before its lease runs out.
    """

    durable = False
    description = "memory (scheduled jobs are lost when Jack stops)"

    def __init__(self):
        self._keys = []  # sorted (due_at_ns, job_id): when each is claimable
        self._jobs = {}  # job_id -> [due_at_ns, claimed, Job]

    def open(self):
        return succeed(None)

    def close(self):
        return succeed(None)

    def add(self, jobs):
        for job in jobs:
            if job.job_id in self._jobs:
                continue
            run_at = job.run_at.ToNanoseconds()
            bisect.insort(self._keys, (run_at, job.job_id))
            self._jobs[job.job_id] = [run_at, False, job]
        return succeed(None)

    def claim(self, now, limit, until):
        end = bisect.bisect_right(
            self._keys, (now, "\U0010ffff"), hi=min(limit, len(self._keys))
        )
        claimed = [job_id for _, job_id in self._keys[:end]]
        for job_id in claimed:
            self._move(job_id, until, claimed=True)
        return succeed([self._jobs[job_id][2] for job_id in claimed])

    def release(self, job_ids, at):
        for job_id in job_ids:
            entry = self._jobs.get(job_id)
            if entry is not None and entry[1]:
                self._move(job_id, at, claimed=False)
        return succeed(None)

    def _move(self, job_id, due_at, claimed):
        entry = self._jobs[job_id]
        del self._keys[bisect.bisect_left(self._keys, (entry[0], job_id))]
        bisect.insort(self._keys, (due_at, job_id))
        entry[0], entry[1] = due_at, claimed

    def remove(self, job_ids):
        for job_id in job_ids:
            entry = self._jobs.pop(job_id, None)
            if entry is not None:
                del self._keys[bisect.bisect_left(self._keys, (entry[0], job_id))]
        return succeed(None)

    def next_due(self):
        return succeed(self._keys[0][0] if self._keys else None)

    def count(self):
        return succeed(len(self._jobs))

    def earliest_run_at(self):
        return succeed(
            min((entry[2].run_at.ToNanoseconds() for entry in self._jobs.values()),
                default=None)
        )
