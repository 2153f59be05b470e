"""
A queue backend that keeps what it accepts, for tests of the code above the
backend seam (enqueue path, scheduler).  It is a full ``IQueueBackend``
and passes the same conformance tests as the real backends.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from jackd.interfaces import IQueueBackend


@implementer(IQueueBackend)
class RecordingBackend(Service):
    """
    @ivar published: every job accepted, in order.
    @ivar calls: how many jobs each publish call carried.
    @ivar refuse: C{None}, or a callable taking a job and returning the
        ``JackError`` to refuse it with (or C{None} to accept it).
    @ivar gate: C{None}, or a Deferred every publish waits for (to hold
        calls in flight).
    @ivar fail_with: C{None}, or an exception every publish call fails with
        as a whole (a broken connection rather than a refused job).
    @ivar healthy: what L{check} answers.
    @ivar invalid: C{None}, or a callable taking a job and returning the
        ``JackError`` that L{validate} raises for it (or C{None}).
    """

    description = "recording (tests only: keeps jobs in memory)"

    def __init__(self):
        self.published = []
        self.calls = []
        self.refuse = None
        self.gate = None
        self.fail_with = None
        self.healthy = True
        self.invalid = None

    def validate(self, job):
        error = self.invalid(job) if self.invalid is not None else None
        if error is not None:
            raise error

    def publish(self, jobs):
        jobs = list(jobs)
        self.calls.append(len(jobs))
        if self.fail_with is not None:
            return fail(self.fail_with)
        if self.gate is None:
            return succeed(self._accept(jobs))
        d = Deferred()
        # Fired with callback or errback, the gate releases the publish.
        self.gate.addBoth(lambda result: (d.callback(self._accept(jobs)), result)[1])
        return d

    def _accept(self, jobs):
        outcomes = []
        for job in jobs:
            error = self.refuse(job) if self.refuse is not None else None
            if error is None:
                self.published.append(job)
            outcomes.append(error)
        return outcomes

    def check(self):
        return succeed(self.healthy)
