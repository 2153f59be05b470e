"""
A schedule store in this process's memory: the development default.  Held
jobs are lost when Jack stops (the dispatcher publishes those already due
before it stops).
"""

import heapq
import itertools

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


class _Held:
    """One job held: when it is claimable, whether it is claimed."""

    __slots__ = ("claimed", "due_at", "job", "run_at", "serial")

    def __init__(self, job, run_at):
        self.job = job
        self.run_at = run_at
        self.due_at = run_at
        self.claimed = False
        self.serial = None


@implementer(IScheduleStore)
class MemoryScheduleStore:
    """
    Jobs in a dict, with two heaps beside it: one of when each becomes
    claimable (then by id), one of ``run_at``s.  Heap entries are never
    removed in place: a job that moves (claimed, released) gets a new entry
    with a new serial, and entries of jobs moved or removed since are
    skipped when they reach the top, and dropped when they outnumber the
    jobs.  Claiming C{k} of C{n} jobs costs O(k log n), whatever C{n}.

    Its clock is the caller's C{now}: one process, one store.  A claim only
    keeps a job from being claimed again before its lease runs out.
    """

    durable = False
    description = "memory (scheduled jobs are lost when Jack stops)"

    def __init__(self):
        self._jobs = {}  # job_id -> _Held
        self._due = []  # heap of (due_at_ns, job_id, serial)
        self._run_ats = []  # heap of (run_at_ns, job_id)
        self._serials = itertools.count()

    def open(self):
        return succeed(None)

    def close(self):
        return succeed(None)

    def add(self, jobs):
        for job in jobs:
            if job.job_id in self._jobs:
                continue
            held = self._jobs[job.job_id] = _Held(job, job.run_at.ToNanoseconds())
            heapq.heappush(self._run_ats, (held.run_at, job.job_id))
            self._move(job.job_id, held, held.run_at)
        return succeed(None)

    def claim(self, now, limit, lease):
        claimed = []
        while self._due and len(claimed) < limit:
            due_at, job_id, serial = self._due[0]
            held = self._jobs.get(job_id)
            if held is not None and held.serial == serial and due_at > now:
                break
            heapq.heappop(self._due)
            if held is not None and held.serial == serial:
                claimed.append((job_id, held))
        for job_id, held in claimed:
            held.claimed = True
            self._move(job_id, held, now + lease)
        return succeed([held.job for _, held in claimed])

    def release(self, job_ids, now, delay):
        for job_id in job_ids:
            held = self._jobs.get(job_id)
            if held is not None and held.claimed:
                held.claimed = False
                self._move(job_id, held, now + delay)
        return succeed(None)

    def _move(self, job_id, held, due_at):
        held.due_at, held.serial = due_at, next(self._serials)
        heapq.heappush(self._due, (due_at, job_id, held.serial))
        if len(self._due) > 2 * len(self._jobs) + 64:
            self._compact()

    def remove(self, job_ids):
        for job_id in job_ids:
            self._jobs.pop(job_id, None)
        if len(self._due) > 2 * len(self._jobs) + 64:
            self._compact()
        return succeed(None)

    def _compact(self):
        """Rebuild the heaps from the jobs held: O(n), once per n moves."""
        self._due = [(held.due_at, job_id, held.serial) for job_id, held in self._jobs.items()]
        heapq.heapify(self._due)
        self._run_ats = [(held.run_at, job_id) for job_id, held in self._jobs.items()]
        heapq.heapify(self._run_ats)

    def next_due(self, now):
        while self._due:
            due_at, job_id, serial = self._due[0]
            held = self._jobs.get(job_id)
            if held is not None and held.serial == serial:
                return succeed(due_at)
            heapq.heappop(self._due)
        return succeed(None)

    def count(self):
        return succeed(len(self._jobs))

    def count_due(self, now):
        return succeed(sum(1 for held in self._jobs.values() if held.run_at <= now))

    def earliest_run_at(self, now):
        while self._run_ats:
            run_at, job_id = self._run_ats[0]
            held = self._jobs.get(job_id)
            if held is not None and held.run_at == run_at:
                return succeed(run_at)
            heapq.heappop(self._run_ats)
        return succeed(None)
