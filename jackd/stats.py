"""
What an operator asks a running Jack in the manhole: ``stats()``.

The gRPC edge counts each job's outcome in a plain C{collections.Counter}
keyed by status code name (``"OK"`` for an accepted job), one dict increment
per job; L{Stats} reads it together with the scheduler and the health
checks of the backend and the config storage.
"""

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

ACCEPTED = "OK"


class Stats:
    """
    The manhole's C{stats()}: call it, and the Deferred it returns fires
    with a dict::

        {"jobs_accepted": 12,
         "jobs_rejected": {"INVALID_ARGUMENT": 2, "NOT_FOUND": 1},
         "scheduler": {"held": 3, "oldest_due_lateness_s": 0.0,
                       "published": 9, "dropped": 0},
         "backend_healthy": True,
         "storage_healthy": True}

    C{jobs_accepted} and C{jobs_rejected} count since start: every job of
    C{Enqueue} and every item of C{EnqueueBulk}, and once a whole
    C{EnqueueBulk} request refused before its items were looked at (too
    many jobs, too large).  C{scheduler} is what the scheduler reports
    (C{held} at least: jobs waiting for their ``run_at``).

    @param counts: the C{collections.Counter} the edge counts into.
    @param scheduler: a ``jackd.scheduler.Scheduler``.
    @param backend: an ``IQueueBackend``.
    @param store: an ``IConfigStore``.
    """

    _log = Logger()

    def __init__(self, counts, scheduler, backend, store):
        self._counts = counts
        self._scheduler = scheduler
        self._backend = backend
        self._store = store

    def __call__(self) -> Deferred:
        checks = [
            maybeDeferred(self._scheduler.stats),
            self._healthy(self._backend.check),
            self._healthy(self._store.check),
        ]
        d = gatherResults(checks, consumeErrors=True)
        d.addCallback(self._combine)
        # A plain Deferred, so the manhole prints "<Deferred ... current
        # result: {...}>" rather than a DeferredList.
        result = Deferred()
        d.chainDeferred(result)
        return result

    def __repr__(self):
        return "<stats(): call it for jobs accepted/rejected, held jobs, health>"

    def _combine(self, results):
        scheduler, backend_ok, store_ok = results
        counts = dict(self._counts)
        accepted = counts.pop(ACCEPTED, 0)
        return {
            "jobs_accepted": accepted,
            "jobs_rejected": dict(sorted((code, n) for code, n in counts.items() if n)),
            "scheduler": scheduler,
            "backend_healthy": backend_ok,
            "storage_healthy": store_ok,
        }

    def _healthy(self, check):
        def failed(failure):
            self._log.failure("stats(): a health check failed", failure)
            return False

        return maybeDeferred(check).addCallback(bool).addErrback(failed)
