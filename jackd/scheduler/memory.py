"""
A schedule store in this process's memory: the development default.  Held
jobs are lost when Jack stops.
"""

import bisect

from twisted.internet.defer import succeed
from zope.interface import implementer

from jackd.interfaces import IScheduleStore


@implementer(IScheduleStore)
class MemoryScheduleStore:
    durable = False
    description = "memory (scheduled jobs are lost when Jack stops)"

    def __init__(self):
        self._keys = []  # sorted (run_at_ns, job_id)
        self._jobs = {}  # job_id -> (key, Job)

    def add(self, jobs):
        for job in jobs:
            key = (job.run_at.ToNanoseconds(), job.job_id)
            if job.job_id in self._jobs:
                continue
            bisect.insort(self._keys, key)
            self._jobs[job.job_id] = (key, job)
        return succeed(None)

    def due(self, now, limit):
        end = bisect.bisect_right(
            self._keys, (now, "\U0010ffff"), hi=min(limit, len(self._keys))
        )
        return succeed([self._jobs[job_id][1] for _, job_id in self._keys[:end]])

    def remove(self, job_ids):
        for job_id in job_ids:
            entry = self._jobs.pop(job_id, None)
            if entry is not None:
                index = bisect.bisect_left(self._keys, entry[0])
                del self._keys[index]
        return succeed(None)

    def next_due(self):
        return succeed(self._keys[0][0] if self._keys else None)

    def count(self):
        return succeed(len(self._jobs))
