"""
The conformance suite of ``IQueueBackend``: every queue backend (noop,
Pub/Sub, the recording test backend) runs these tests through a subclass
that says how to build one.

The tests wait on the backend's Deferreds instead of assuming they have
already fired, so a backend talking to a real broker runs them unchanged.
Subclasses mix this into L{twisted.trial.unittest.TestCase} and define
C{make_backend()}.
"""

from twisted.application.service import IService
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from zope.interface.verify import verifyObject

from jack.job_pb2 import Job, Queue
from jackd.interfaces import IQueueBackend

QUEUES = (Queue.QUEUE_IMMEDIATE, Queue.QUEUE_HIGH, Queue.QUEUE_MEDIUM, Queue.QUEUE_LOW)

# 2023-11-14T22:13:20Z, a plausible enqueue time.
ENQUEUED_AT_NS = 1_700_000_000_000_000_000


def make_job(number, queue=Queue.QUEUE_MEDIUM, producer_id="prod_test", job_type="send"):
    """
    A ``jack.Job`` as the enqueue path hands it to a backend: every field
    set.
    """
    job = Job(
        job_id=f"job_{number:026d}",
        producer_id=producer_id,
        job_type=job_type,
        queue=queue,
        payload=b'{"n": %d}' % (number,),
        trace_id=f"trace-{number}",
        max_retries=3,
    )
    job.enqueued_at.FromNanoseconds(ENQUEUED_AT_NS + number)
    job.run_at.FromNanoseconds(ENQUEUED_AT_NS + number)
    return job


class QueueBackendTestsMixin:
    """
    Tests every ``IQueueBackend`` passes.

    Subclasses define C{make_backend()}, returning a backend (or a Deferred
    firing with one) that is not started yet.  The mixin starts it before
    each test and stops it afterwards if the test left it running.
    """

    def make_backend(self):
        raise NotImplementedError(f"{type(self).__name__} must define make_backend()")

    @inlineCallbacks
    def setUp(self):
        self.backend = yield maybeDeferred(self.make_backend)
        yield maybeDeferred(self.backend.startService)
        self.addCleanup(self._stop)

    def _stop(self):
        if self.backend.running:
            return self.backend.stopService()

    def test_interface(self):
        """
        The backend provides ``IQueueBackend``.
        """
        self.assertTrue(verifyObject(IQueueBackend, self.backend))
        self.assertIsInstance(self.backend.description, str)

    def test_service(self):
        """
        The backend is also an ``IService`` (stopping it flushes publishes
        in flight).
        """
        self.assertTrue(verifyObject(IService, self.backend))

    @inlineCallbacks
    def test_publishOne(self):
        """
        C{publish} of one job fires with C{[None]}: accepted.
        """
        outcomes = yield self.backend.publish([make_job(1)])
        self.assertEqual(list(outcomes), [None])

    @inlineCallbacks
    def test_publishMany(self):
        """
        C{publish} of many jobs, on all four queues, fires with one C{None}
        per job, in order.
        """
        jobs = [make_job(n, queue=QUEUES[n % 4]) for n in range(12)]
        outcomes = yield self.backend.publish(jobs)
        self.assertEqual(list(outcomes), [None] * 12)

    @inlineCallbacks
    def test_publishEachQueue(self):
        """
        C{publish} accepts a job on each queue, one call per queue.
        """
        for n, queue in enumerate(QUEUES):
            outcomes = yield self.backend.publish([make_job(n, queue=queue)])
            self.assertEqual(list(outcomes), [None])

    @inlineCallbacks
    def test_publishConcurrently(self):
        """
        Several C{publish} calls in flight at once each fire with their own
        outcomes.
        """
        calls = [
            self.backend.publish([make_job(10 * c + n) for n in range(c + 1)])
            for c in range(3)
        ]
        for c, d in enumerate(calls):
            self.assertEqual(list((yield d)), [None] * (c + 1))

    def test_validate(self):
        """
        C{validate} lets an ordinary job through on every queue (it raises
        only for jobs the broker could never take).
        """
        for n, queue in enumerate(QUEUES):
            self.assertIsNone(self.backend.validate(make_job(n, queue=queue)))

    @inlineCallbacks
    def test_check(self):
        """
        C{check} fires with C{True} when the backend is healthy.
        """
        self.assertIs((yield self.backend.check()), True)

    @inlineCallbacks
    def test_stopAfterPublishes(self):
        """
        C{stopService} after publishes fires once they are flushed, without
        error, and leaves the backend stopped.
        """
        published = [
            self.backend.publish([make_job(n, queue=queue)])
            for n, queue in enumerate(QUEUES)
        ]
        yield maybeDeferred(self.backend.stopService)
        self.assertFalse(self.backend.running)
        self.assertEqual([d.called for d in published], [True] * len(QUEUES))
        for d in published:
            self.assertEqual(list((yield d)), [None])
