"""
The conformance suite of ``IScheduleStore``: every schedule store runs these
tests through a subclass that says how to build one.

The tests wait on the store's Deferreds instead of assuming they have
already fired, so a durable store doing real I/O runs them unchanged.
Subclasses mix this into L{twisted.trial.unittest.TestCase} and define
C{make_store()}.
"""

from twisted.internet.defer import inlineCallbacks, maybeDeferred
from zope.interface.verify import verifyObject

from jack.job_pb2 import Job, Queue
from jackd.interfaces import IScheduleStore

# A plausible "now" in integer nanoseconds (2023-11-14T22:13:20Z): large
# enough that a store keeping times as floats would lose nanoseconds.
NOW = 1_700_000_000_000_000_000
SECOND = 1_000_000_000


def make_job(job_id, run_at_ns):
    """
    A ``jack.Job`` as the scheduler hands it over: every field set, with
    C{run_at} at C{run_at_ns}.
    """
    job = Job(
        job_id=job_id,
        producer_id="prod_test",
        job_type="send",
        queue=Queue.QUEUE_HIGH,
        payload=b"payload of " + job_id.encode(),
        trace_id=f"trace-{job_id}",
        max_retries=2,
    )
    job.enqueued_at.FromNanoseconds(NOW - 60 * SECOND)
    job.run_at.FromNanoseconds(run_at_ns)
    return job


class ScheduleStoreTestsMixin:
    """
    Tests every ``IScheduleStore`` passes.

    Subclasses define C{make_store()}, returning an empty store ready to use
    (or a Deferred firing with one); they arrange its clean-up themselves.
    """

    def make_store(self):
        raise NotImplementedError(f"{type(self).__name__} must define make_store()")

    def setUp(self):
        d = maybeDeferred(self.make_store)
        d.addCallback(lambda store: setattr(self, "store", store))
        return d

    @inlineCallbacks
    def due_ids(self, now, limit=100):
        jobs = yield self.store.due(now, limit)
        return [job.job_id for job in jobs]

    def test_interface(self):
        """
        The store provides ``IScheduleStore``.
        """
        self.assertTrue(verifyObject(IScheduleStore, self.store))
        self.assertIsInstance(self.store.durable, bool)
        self.assertIsInstance(self.store.description, str)

    @inlineCallbacks
    def test_empty(self):
        """
        An empty store holds nothing: no job is due, C{next_due} fires with
        C{None} and C{count} with 0.
        """
        self.assertEqual((yield self.due_ids(NOW + 1000 * SECOND)), [])
        self.assertIsNone((yield self.store.next_due()))
        self.assertEqual((yield self.store.count()), 0)

    @inlineCallbacks
    def test_addFiresNone(self):
        """
        C{add} fires with C{None} once the jobs are held.
        """
        self.assertIsNone((yield self.store.add([make_job("a", NOW + SECOND)])))
        self.assertEqual((yield self.store.count()), 1)

    @inlineCallbacks
    def test_dueOnlyPastJobs(self):
        """
        C{due(now)} returns only the jobs whose C{run_at} is at or before
        C{now}, earliest first, whatever order they were added in.
        """
        yield self.store.add([
            make_job("c", NOW - 1 * SECOND),
            make_job("later", NOW + 5 * SECOND),
            make_job("a", NOW - 30 * SECOND),
        ])
        yield self.store.add([
            make_job("b", NOW - 10 * SECOND),
            make_job("much-later", NOW + 3600 * SECOND),
        ])
        self.assertEqual((yield self.due_ids(NOW)), ["a", "b", "c"])
        self.assertEqual((yield self.due_ids(NOW + 5 * SECOND)), ["a", "b", "c", "later"])
        self.assertEqual((yield self.due_ids(NOW - 31 * SECOND)), [])

    @inlineCallbacks
    def test_dueLimit(self):
        """
        C{due(now, limit)} returns at most C{limit} jobs: the earliest.
        """
        yield self.store.add([make_job(f"j{n}", NOW - n * SECOND) for n in range(1, 6)])
        self.assertEqual((yield self.due_ids(NOW, 2)), ["j5", "j4"])
        self.assertEqual((yield self.due_ids(NOW, 1)), ["j5"])
        self.assertEqual((yield self.due_ids(NOW, 5)), ["j5", "j4", "j3", "j2", "j1"])
        self.assertEqual((yield self.due_ids(NOW, 6)), ["j5", "j4", "j3", "j2", "j1"])

    @inlineCallbacks
    def test_dueLimitWithFutureJobs(self):
        """
        The limit counts only due jobs: with fewer due jobs than C{limit},
        no job that is not yet due fills the rest.
        """
        yield self.store.add([
            make_job("due", NOW - SECOND),
            make_job("future-1", NOW + SECOND),
            make_job("future-2", NOW + 2 * SECOND),
        ])
        self.assertEqual((yield self.due_ids(NOW, 3)), ["due"])

    @inlineCallbacks
    def test_dueSameRunAt(self):
        """
        Jobs sharing a C{run_at} are all due at it; C{limit} splits them.
        """
        yield self.store.add([make_job(name, NOW) for name in "xyz"])
        self.assertEqual(sorted((yield self.due_ids(NOW))), ["x", "y", "z"])
        self.assertEqual(len((yield self.due_ids(NOW, 2))), 2)

    @inlineCallbacks
    def test_dueExactlyAtNow(self):
        """
        A job whose C{run_at} is exactly C{now} is due; one nanosecond
        later it is not.
        """
        yield self.store.add([
            make_job("at-now", NOW + 123_456_789),
            make_job("one-ns-later", NOW + 123_456_790),
        ])
        self.assertEqual((yield self.due_ids(NOW + 123_456_789)), ["at-now"])
        self.assertEqual((yield self.due_ids(NOW + 123_456_788)), [])
        self.assertEqual(
            (yield self.due_ids(NOW + 123_456_790)), ["at-now", "one-ns-later"]
        )

    @inlineCallbacks
    def test_dueReturnsJobsAsAdded(self):
        """
        C{due} returns jobs equal, field for field, to those added.
        """
        job = make_job("a", NOW - SECOND)
        yield self.store.add([job])
        self.assertEqual(list((yield self.store.due(NOW, 10))), [job])

    @inlineCallbacks
    def test_dueDoesNotRemove(self):
        """
        Jobs C{due} returns stay held: a second call returns them again and
        C{count} is unchanged.
        """
        yield self.store.add([make_job("a", NOW - 2), make_job("b", NOW - 1)])
        self.assertEqual((yield self.due_ids(NOW)), ["a", "b"])
        self.assertEqual((yield self.due_ids(NOW)), ["a", "b"])
        self.assertEqual((yield self.store.count()), 2)
        self.assertEqual((yield self.store.next_due()), NOW - 2)

    @inlineCallbacks
    def test_remove(self):
        """
        C{remove} stops holding the jobs with the given ids and fires with
        C{None}; the others stay held.
        """
        yield self.store.add([make_job(name, NOW - 10 + n) for n, name in enumerate("abcd")])
        self.assertIsNone((yield self.store.remove(["b", "d"])))
        self.assertEqual((yield self.due_ids(NOW)), ["a", "c"])
        self.assertEqual((yield self.store.count()), 2)
        yield self.store.remove(["a", "c"])
        self.assertEqual((yield self.due_ids(NOW)), [])
        self.assertEqual((yield self.store.count()), 0)
        self.assertIsNone((yield self.store.next_due()))

    @inlineCallbacks
    def test_removeUnknownIgnored(self):
        """
        C{remove} ignores ids it does not hold, and ids removed already.
        """
        yield self.store.add([make_job("a", NOW), make_job("b", NOW + 1)])
        yield self.store.remove(["a"])
        self.assertIsNone((yield self.store.remove(["a", "nope", "b"])))
        self.assertEqual((yield self.store.count()), 0)
        yield self.store.remove([])
        yield self.store.remove(["still-nothing"])
        self.assertEqual((yield self.store.count()), 0)

    @inlineCallbacks
    def test_nextDue(self):
        """
        C{next_due} fires with the earliest C{run_at} held, in integer
        nanoseconds, whether or not it is in the past, and follows removals.
        """
        yield self.store.add([make_job("b", NOW + 7), make_job("a", NOW + 3)])
        yield self.store.add([make_job("c", NOW + 5)])
        self.assertEqual((yield self.store.next_due()), NOW + 3)
        yield self.store.remove(["a"])
        self.assertEqual((yield self.store.next_due()), NOW + 5)
        yield self.store.add([make_job("past", NOW - 3600 * SECOND)])
        self.assertEqual((yield self.store.next_due()), NOW - 3600 * SECOND)

    @inlineCallbacks
    def test_count(self):
        """
        C{count} fires with the number of jobs held, due or not.
        """
        yield self.store.add([make_job("a", NOW - SECOND), make_job("b", NOW + SECOND)])
        self.assertEqual((yield self.store.count()), 2)
        yield self.store.add([make_job("c", NOW + 2 * SECOND)])
        self.assertEqual((yield self.store.count()), 3)

    @inlineCallbacks
    def test_addSameIdTwice(self):
        """
        Adding a job whose id is already held holds it once: it is counted
        and returned once, and one C{remove} releases it.
        """
        job = make_job("a", NOW - SECOND)
        yield self.store.add([job])
        yield self.store.add([job])
        yield self.store.add([job, make_job("b", NOW - 2 * SECOND)])
        self.assertEqual((yield self.store.count()), 2)
        self.assertEqual((yield self.due_ids(NOW)), ["b", "a"])
        yield self.store.remove(["a"])
        self.assertEqual((yield self.due_ids(NOW)), ["b"])
        self.assertEqual((yield self.store.count()), 1)
