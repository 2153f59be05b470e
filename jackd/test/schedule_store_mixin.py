"""
The conformance suite of ``IScheduleStore``: every schedule store runs these
tests through a subclass that says how to build one.

The tests wait on the store's Deferreds instead of assuming they have
already fired, so a durable store doing real I/O runs them unchanged.
Subclasses mix this into L{twisted.trial.unittest.TestCase} and define
C{make_store()}.

L{DurableScheduleStoreTestsMixin} adds what every durable store (SQLite,
PostgreSQL) promises on top: held jobs survive closing and reopening,
C{add} fires only once the jobs are committed, and a row that does not
decode holds up no other.

Times are passed in (C{now}); a store that reads its database's clock is
built for these tests to take the caller's instead, and its own tests
check the database's clock.
"""

from twisted.internet.defer import inlineCallbacks, maybeDeferred
from zope.interface.verify import verifyObject

from jack.job_pb2 import Job, Queue
from jackd.errors import Unavailable
from jackd.interfaces import IScheduleStore
from jackd.test.mixin_base import StoreTestsBase

# A plausible "now" in integer nanoseconds (2023-11-14T22:13:20Z): large
# enough that a store keeping times as floats would lose nanoseconds.
NOW = 1_700_000_000_000_000_000
SECOND = 1_000_000_000
LEASE = 60 * SECOND


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


class ScheduleStoreTestsMixin(StoreTestsBase):
    """
    Tests every ``IScheduleStore`` passes.

    Subclasses define C{make_store()}, returning an empty store that is not
    open yet (or a Deferred firing with one); they arrange the clean-up of
    its database themselves.  The mixin opens the store before each test
    and closes it after.
    """

    def prepare_store(self, store):
        self.addCleanup(store.close)
        return store.open()

    @inlineCallbacks
    def claim_ids(self, now, limit=100, lease=LEASE, store=None):
        store = store or self.store
        jobs = yield store.claim(now, limit, lease)
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
        An empty store holds nothing: no job is claimed, C{next_due} and
        C{earliest_run_at} fire with C{None} and C{count} with 0.
        """
        self.assertEqual((yield self.claim_ids(NOW + 1000 * SECOND)), [])
        self.assertIsNone((yield self.store.next_due(NOW)))
        self.assertIsNone((yield self.store.earliest_run_at(NOW)))
        self.assertEqual((yield self.store.count()), 0)
        self.assertEqual((yield self.store.count_due(NOW)), 0)

    @inlineCallbacks
    def test_addFiresNone(self):
        """
        C{add} fires with C{None} once the jobs are held.
        """
        self.assertIsNone((yield self.store.add([make_job("a", NOW + SECOND)])))
        self.assertEqual((yield self.store.count()), 1)

    @inlineCallbacks
    def test_claimOnlyDueJobs(self):
        """
        C{claim(now)} returns only the jobs whose C{run_at} is at or before
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
        self.assertEqual((yield self.claim_ids(NOW - 31 * SECOND)), [])
        self.assertEqual((yield self.claim_ids(NOW)), ["a", "b", "c"])
        self.assertEqual((yield self.claim_ids(NOW + 5 * SECOND)), ["later"])

    @inlineCallbacks
    def test_claimLimit(self):
        """
        C{claim(now, limit)} returns at most C{limit} jobs: the earliest.
        """
        yield self.store.add([make_job(f"j{n}", NOW - n * SECOND) for n in range(1, 6)])
        self.assertEqual((yield self.claim_ids(NOW, 2)), ["j5", "j4"])
        self.assertEqual((yield self.claim_ids(NOW, 1)), ["j3"])
        self.assertEqual((yield self.claim_ids(NOW, 5)), ["j2", "j1"])
        self.assertEqual((yield self.claim_ids(NOW, 5)), [])

    @inlineCallbacks
    def test_claimLimitWithFutureJobs(self):
        """
        The limit counts only due jobs: with fewer due jobs than C{limit},
        no job that is not yet due fills the rest.
        """
        yield self.store.add([
            make_job("due", NOW - SECOND),
            make_job("future-1", NOW + SECOND),
            make_job("future-2", NOW + 2 * SECOND),
        ])
        self.assertEqual((yield self.claim_ids(NOW, 3)), ["due"])

    @inlineCallbacks
    def test_claimSameRunAt(self):
        """
        Jobs sharing a C{run_at} are all due at it; C{limit} splits them,
        in id order.
        """
        yield self.store.add([make_job(name, NOW) for name in "zxy"])
        self.assertEqual((yield self.claim_ids(NOW, 2)), ["x", "y"])
        self.assertEqual((yield self.claim_ids(NOW, 2)), ["z"])

    @inlineCallbacks
    def test_claimExactlyAtNow(self):
        """
        A job whose C{run_at} is exactly C{now} is due; one nanosecond
        later it is not.
        """
        yield self.store.add([
            make_job("at-now", NOW + 123_456_789),
            make_job("one-ns-later", NOW + 123_456_790),
        ])
        self.assertEqual((yield self.claim_ids(NOW + 123_456_788)), [])
        self.assertEqual((yield self.claim_ids(NOW + 123_456_789)), ["at-now"])
        self.assertEqual((yield self.claim_ids(NOW + 123_456_790)), ["one-ns-later"])

    @inlineCallbacks
    def test_claimReturnsJobsAsAdded(self):
        """
        C{claim} returns jobs equal, field for field, to those added.
        """
        job = make_job("a", NOW - SECOND)
        yield self.store.add([job])
        self.assertEqual(list((yield self.store.claim(NOW, 10, LEASE))), [job])

    @inlineCallbacks
    def test_claimedHeldUntilLeaseEnds(self):
        """
        Claimed jobs stay held (C{count} is unchanged) and are not claimed
        again before the lease has run from the claim's C{now}; then they
        are claimable again.  C{next_due} follows: it is the end of the
        lease once every due job is claimed.
        """
        yield self.store.add([make_job("a", NOW - 2), make_job("b", NOW - 1)])
        self.assertEqual((yield self.claim_ids(NOW, lease=10 * SECOND)), ["a", "b"])
        self.assertEqual((yield self.store.count()), 2)
        self.assertEqual((yield self.store.next_due(NOW)), NOW + 10 * SECOND)
        self.assertEqual((yield self.claim_ids(NOW + 10 * SECOND - 1)), [])
        self.assertEqual(
            (yield self.claim_ids(NOW + 10 * SECOND, lease=10 * SECOND)), ["a", "b"]
        )
        self.assertEqual((yield self.store.next_due(NOW)), NOW + 20 * SECOND)

    @inlineCallbacks
    def test_claimSkipsClaimed(self):
        """
        A second claim while the first one's lease runs returns the due
        jobs the first did not take, never one it took.
        """
        yield self.store.add([make_job(f"j{n}", NOW - 10 + n) for n in range(5)])
        first = yield self.claim_ids(NOW, 2)
        second = yield self.claim_ids(NOW, 10)
        self.assertEqual((first, second), (["j0", "j1"], ["j2", "j3", "j4"]))

    @inlineCallbacks
    def test_release(self):
        """
        C{release(ids, now, delay)} makes claimed jobs claimable again
        C{delay} after C{now}, not before; C{next_due} says when.
        """
        yield self.store.add([make_job("a", NOW - 2), make_job("b", NOW - 1)])
        yield self.claim_ids(NOW)
        self.assertIsNone((yield self.store.release(["a"], NOW, 2 * SECOND)))
        self.assertEqual((yield self.store.next_due(NOW)), NOW + 2 * SECOND)
        self.assertEqual((yield self.claim_ids(NOW + 2 * SECOND - 1)), [])
        self.assertEqual((yield self.claim_ids(NOW + 2 * SECOND)), ["a"])

    @inlineCallbacks
    def test_releaseNow(self):
        """
        Released with no delay, a job is claimable at once, ahead of jobs
        that became claimable later.
        """
        yield self.store.add([make_job("a", NOW - 5), make_job("b", NOW - 1)])
        self.assertEqual((yield self.claim_ids(NOW, 1)), ["a"])
        yield self.store.release(["a"], NOW - 3, 0)
        self.assertEqual((yield self.store.next_due(NOW)), NOW - 3)
        self.assertEqual((yield self.claim_ids(NOW)), ["a", "b"])

    @inlineCallbacks
    def test_releaseOnlyClaimed(self):
        """
        C{release} ignores jobs that are not claimed (never, or released
        already) and ids it does not hold: they stay claimable as before.
        """
        yield self.store.add([make_job("a", NOW - SECOND), make_job("b", NOW - 1)])
        yield self.claim_ids(NOW, 1)
        yield self.store.release(["a"], NOW, SECOND)
        yield self.store.release(["a", "b", "nope"], NOW, 3600 * SECOND)
        self.assertEqual((yield self.claim_ids(NOW)), ["b"])
        self.assertEqual((yield self.claim_ids(NOW + SECOND)), ["a"])
        yield self.store.release([], NOW, 0)

    @inlineCallbacks
    def test_remove(self):
        """
        C{remove} stops holding the jobs with the given ids, claimed or
        not, and fires with C{None}; the others stay held.
        """
        yield self.store.add([make_job(name, NOW - 10 + n) for n, name in enumerate("abcd")])
        self.assertEqual((yield self.claim_ids(NOW, 1)), ["a"])
        self.assertIsNone((yield self.store.remove(["a", "b", "d"])))
        self.assertEqual((yield self.store.count()), 1)
        self.assertEqual((yield self.claim_ids(NOW + LEASE)), ["c"])
        yield self.store.remove(["c"])
        self.assertEqual((yield self.store.count()), 0)
        self.assertIsNone((yield self.store.next_due(NOW)))

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
        self.assertEqual((yield self.store.next_due(NOW)), NOW + 3)
        yield self.store.remove(["a"])
        self.assertEqual((yield self.store.next_due(NOW)), NOW + 5)
        yield self.store.add([make_job("past", NOW - 3600 * SECOND)])
        self.assertEqual((yield self.store.next_due(NOW)), NOW - 3600 * SECOND)

    @inlineCallbacks
    def test_countAndEarliestRunAt(self):
        """
        C{count} fires with the number of jobs held and C{earliest_run_at}
        with the earliest C{run_at} among them, due or not, claimed or not.
        """
        yield self.store.add([make_job("a", NOW - SECOND), make_job("b", NOW + SECOND)])
        self.assertEqual((yield self.store.count()), 2)
        yield self.store.add([make_job("c", NOW + 2 * SECOND)])
        self.assertEqual((yield self.store.count()), 3)
        yield self.claim_ids(NOW)
        self.assertEqual((yield self.store.count()), 3)
        self.assertEqual((yield self.store.earliest_run_at(NOW)), NOW - SECOND)
        yield self.store.remove(["a"])
        self.assertEqual((yield self.store.earliest_run_at(NOW)), NOW + SECOND)

    @inlineCallbacks
    def test_countDue(self):
        """
        C{count_due(now)} counts the jobs whose C{run_at} is at or before
        C{now}, claimed or not, and also those released for a retry later.
        """
        yield self.store.add([make_job(f"d{n}", NOW - n) for n in range(3)])
        yield self.store.add([make_job("later", NOW + 1)])
        self.assertEqual((yield self.store.count_due(NOW)), 3)
        self.assertEqual((yield self.claim_ids(NOW, 2)), ["d2", "d1"])
        yield self.store.release(["d2"], NOW, 30 * SECOND)
        self.assertEqual((yield self.store.count_due(NOW)), 3)
        self.assertEqual((yield self.store.count_due(NOW + 1)), 4)
        yield self.store.remove(["d0"])
        self.assertEqual((yield self.store.count_due(NOW)), 2)

    @inlineCallbacks
    def test_claimAfterManyMoves(self):
        """
        Jobs claimed, released and removed over and over are claimed in the
        order of when each became claimable, then by id, each once per
        claim, none lost: the store's bookkeeping of moved jobs stays
        right (checked against a plain model of it).
        """
        due = {f"j{n:03d}": NOW - 1000 + n for n in range(200)}  # the model
        yield self.store.add([make_job(job_id, at) for job_id, at in due.items()])
        for round_ in range(5):
            now = NOW + round_ * 10 * SECOND
            expected = sorted((at, job_id) for job_id, at in due.items() if at <= now)[:50]
            ids = yield self.claim_ids(now, 50, lease=5 * SECOND)
            self.assertEqual(ids, [job_id for _, job_id in expected])
            for job_id in ids[25:]:
                del due[job_id]
            for n, job_id in enumerate(ids[:25]):
                due[job_id] = now + n
                yield self.store.release([job_id], now, n)
            yield self.store.remove(ids[25:])
        self.assertEqual((yield self.store.count()), len(due))
        left = yield self.claim_ids(NOW + 100 * SECOND, 500)
        self.assertEqual(left, [job_id for _, job_id in sorted((at, i) for i, at in due.items())])

    @inlineCallbacks
    def test_addSameIdTwice(self):
        """
        Adding a job whose id is already held holds it once: it is counted
        and claimed once, and one C{remove} releases it.  Adding it again
        while it is claimed leaves the claim as it was.
        """
        job = make_job("a", NOW - SECOND)
        yield self.store.add([job])
        yield self.store.add([job])
        yield self.store.add([job, make_job("b", NOW - 2 * SECOND)])
        self.assertEqual((yield self.store.count()), 2)
        self.assertEqual((yield self.claim_ids(NOW)), ["b", "a"])
        yield self.store.add([job])
        self.assertEqual((yield self.claim_ids(NOW)), [])
        yield self.store.remove(["a"])
        self.assertEqual((yield self.claim_ids(NOW + LEASE)), ["b"])
        self.assertEqual((yield self.store.count()), 1)

    @inlineCallbacks
    def test_manyJobs(self):
        """
        A store takes and claims thousands of jobs in one call each (a
        burst due in the same second), earliest first, each once.
        """
        jobs = [make_job(f"job-{n:05d}", NOW - 5000 + n) for n in range(2500)]
        yield self.store.add(jobs[1000:])
        yield self.store.add(jobs[:1000])
        first = yield self.claim_ids(NOW, 2000)
        second = yield self.claim_ids(NOW, 2000)
        self.assertEqual(first + second, [job.job_id for job in jobs])
        yield self.store.remove(first)
        self.assertEqual((yield self.store.count()), 500)


class DurableScheduleStoreTestsMixin:
    """
    What a durable store promises besides conformance.  Subclasses also
    define C{reopen_store()}, a new store on the same database (not open
    yet), and C{committed_ids()}, the ids of the jobs held as another
    connection to the database sees them (a Deferred or a list).
    """

    def reopen_store(self):
        raise NotImplementedError(f"{type(self).__name__} must define reopen_store()")

    def committed_ids(self):
        raise NotImplementedError(f"{type(self).__name__} must define committed_ids()")

    def insert_raw(self, job_id, run_at, blob):
        """Write a row with C{blob} as its job, behind the store's back."""
        raise NotImplementedError(f"{type(self).__name__} must define insert_raw()")

    @inlineCallbacks
    def reopened(self):
        """The store closed, and a new one on the same database opened."""
        yield self.store.close()
        store = yield maybeDeferred(self.reopen_store)
        yield store.open()
        self.addCleanup(store.close)
        return store

    def test_durable(self):
        """
        The store says its jobs survive a restart.
        """
        self.assertIs(self.store.durable, True)

    @inlineCallbacks
    def test_addCommitted(self):
        """
        C{add} fires only once another connection to the database sees the
        jobs: they are committed before Jack answers OK.
        """
        yield self.store.add([make_job("a", NOW), make_job("b", NOW + SECOND)])
        self.assertEqual(sorted((yield maybeDeferred(self.committed_ids))), ["a", "b"])

    @inlineCallbacks
    def test_survivesReopen(self):
        """
        Jobs held when a store closes are held, equal field for field, by a
        new store on the same database, and each is due at its own time.
        """
        jobs = [make_job("a", NOW - SECOND), make_job("b", NOW + SECOND)]
        yield self.store.add(jobs)
        store = yield self.reopened()
        self.assertEqual((yield store.count()), 2)
        self.assertEqual((yield store.next_due(NOW)), NOW - SECOND)
        self.assertEqual(list((yield store.claim(NOW, 10, LEASE))), jobs[:1])
        self.assertEqual(list((yield store.claim(NOW + SECOND, 10, LEASE))), jobs[1:])

    @inlineCallbacks
    def test_undecodableRowSetAside(self):
        """
        A row whose job does not decode (written by something else, or
        damaged) does not fail the claim: the jobs due with it are claimed,
        and it is logged at error level and set aside, unclaimed, for an
        hour, still held.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, globalLogPublisher

        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        yield self.store.add([make_job("a", NOW - 3), make_job("c", NOW - 1)])
        yield maybeDeferred(self.insert_raw, "b", NOW - 2, b"\xff\xff not a job")
        self.assertEqual((yield self.claim_ids(NOW)), ["a", "c"])
        self.assertEqual((yield self.store.count()), 3)
        self.assertEqual((yield self.store.next_due(NOW)), NOW + LEASE)
        self.assertEqual((yield self.claim_ids(NOW + 3599 * SECOND)), ["a", "c"])
        errors = [e["job_id"] for e in observer if e["log_level"] == LogLevel.error]
        self.assertEqual(errors, ["b"])
        self.assertEqual((yield self.claim_ids(NOW + 3600 * SECOND)), [])
        errors = [e["job_id"] for e in observer if e["log_level"] == LogLevel.error]
        self.assertEqual(errors, ["b", "b"])

    @inlineCallbacks
    def test_unreachable(self):
        """
        A store whose database cannot be reached fails C{open} and C{add}
        with ``Unavailable`` naming the store (the enqueue path answers
        UNAVAILABLE, and Jack's start stops with one line).
        """
        store = yield maybeDeferred(self.make_unreachable_store)
        self.addCleanup(store.close)
        for call in (store.open, lambda: store.add([make_job("a", NOW)])):
            failure = yield self.assertFailure(maybeDeferred(call), Unavailable)
            self.assertIn("schedule store", str(failure))
