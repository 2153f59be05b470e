"""
Tests for L{jackd.scheduler.Scheduler}, the dispatcher of jobs whose
C{run_at} is in the future, driven by a L{task.Clock} over the real memory
schedule store and the recording backend.
"""

from twisted.internet import task
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial import unittest

from jack.job_pb2 import Job, Queue
from jackd.errors import (
    ConfigError,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from jackd.scheduler import Scheduler
from jackd.scheduler.memory import MemoryScheduleStore
from jackd.testing.backends import RecordingBackend

# The clock starts at this instant (2023-11-14T22:13:20Z), in whole seconds
# so that the times below, whole or half seconds after it, are exact floats.
START = 1_700_000_000
MS = 1_000_000  # nanoseconds


def ns_at(ms):
    """C{ms} milliseconds after L{START}, in integer nanoseconds."""
    return (START * 1000 + ms) * MS


def make_job(job_id, run_at_ms):
    """A job due C{run_at_ms} milliseconds after L{START}."""
    job = Job(
        job_id=job_id, producer_id="prod_test", job_type="send",
        queue=Queue.QUEUE_MEDIUM, payload=job_id.encode(),
    )
    job.enqueued_at.FromNanoseconds(ns_at(0))
    job.run_at.FromNanoseconds(ns_at(run_at_ms))
    return job


class SchedulerTests(unittest.SynchronousTestCase):
    """
    L{Scheduler} publishes held jobs no earlier than their C{run_at},
    removes them only once the backend accepted them, and never drops one.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(START)
        self.store = MemoryScheduleStore()
        self.backend = RecordingBackend()
        self.scheduler = None

    def start(self, batch_size=500, **kwargs):
        self.scheduler = Scheduler(
            self.store, self.backend, self.clock, batch_size=batch_size, **kwargs
        )
        self.scheduler.startService()
        self.addCleanup(self.stop_if_running)
        return self.scheduler

    def stop_if_running(self):
        if self.scheduler.running:
            self.backend.gate = None
            self.successResultOf(self.scheduler.stopService())

    def advance_to(self, ms):
        """Move the clock to C{ms} milliseconds after L{START}."""
        self.clock.advance((START * 1000 + ms) / 1000 - self.clock.seconds())

    def schedule(self, *jobs):
        self.assertEqual(
            self.successResultOf(self.scheduler.schedule(list(jobs))), [None] * len(jobs)
        )

    def published_ids(self):
        return [job.job_id for job in self.backend.published]

    def held(self):
        return self.successResultOf(self.store.count())

    def test_scheduleHolds(self):
        """
        C{schedule} fires with one C{None} per job once the store holds
        them, and publishes nothing yet.
        """
        self.start()
        self.schedule(make_job("a", 10_000), make_job("b", 20_000))
        self.assertEqual(self.held(), 2)
        self.assertEqual(self.backend.calls, [])

    def test_notPublishedEarly(self):
        """
        A scheduled job is not published one millisecond before its
        C{run_at}.
        """
        self.start()
        self.schedule(make_job("a", 10_000))
        self.advance_to(9_999)
        self.assertEqual(self.backend.calls, [])
        self.assertEqual(self.held(), 1)

    def test_publishedAtRunAt(self):
        """
        A scheduled job is published at its C{run_at}, then no longer held.
        """
        self.start()
        self.schedule(make_job("a", 10_000))
        self.advance_to(9_999)
        self.advance_to(10_000)
        self.assertEqual(self.published_ids(), ["a"])
        self.assertEqual(self.held(), 0)
        self.assertIsNone(self.successResultOf(self.store.next_due(ns_at(10_000))))

    def test_severalTimesInOrder(self):
        """
        Jobs due at different times are each published at their own time,
        in C{run_at} order, whatever order they were scheduled in.
        """
        self.start()
        self.schedule(make_job("third", 4_000), make_job("first", 1_000))
        self.schedule(make_job("second", 2_500))
        seen = []
        for ms in [500, 999, 1_000, 2_000, 2_499, 2_500, 3_999, 4_000, 9_000]:
            self.advance_to(ms)
            seen.append((ms, self.published_ids()))
        self.assertEqual(
            seen,
            [
                (500, []), (999, []), (1_000, ["first"]), (2_000, ["first"]),
                (2_499, ["first"]), (2_500, ["first", "second"]),
                (3_999, ["first", "second"]), (4_000, ["first", "second", "third"]),
                (9_000, ["first", "second", "third"]),
            ],
        )
        self.assertEqual(self.backend.calls, [1, 1, 1])
        self.assertEqual(self.held(), 0)

    def test_earlierJobRearms(self):
        """
        C{schedule} of a job due earlier than every job held re-arms the
        timer for it: it is published at its own C{run_at}, and the later
        job at its own.
        """
        self.start()
        self.schedule(make_job("late", 10_000))
        self.advance_to(1_000)
        self.schedule(make_job("early", 5_000))
        self.advance_to(4_999)
        self.assertEqual(self.published_ids(), [])
        self.advance_to(5_000)
        self.assertEqual(self.published_ids(), ["early"])
        self.advance_to(9_999)
        self.assertEqual(self.published_ids(), ["early"])
        self.advance_to(10_000)
        self.assertEqual(self.published_ids(), ["early", "late"])

    def test_laterJobKeepsTimer(self):
        """
        C{schedule} of a job due later than one held leaves the earlier job
        published at its own C{run_at}.
        """
        self.start()
        self.schedule(make_job("early", 5_000))
        self.schedule(make_job("late", 10_000))
        self.advance_to(5_000)
        self.assertEqual(self.published_ids(), ["early"])
        self.advance_to(10_000)
        self.assertEqual(self.published_ids(), ["early", "late"])

    def test_batches(self):
        """
        Jobs due at once are published in batches of C{batch_size}, earliest
        first, all in the same turn, and all are then removed.
        """
        self.start(batch_size=3)
        jobs = [make_job(f"j{n}", 1_000 + n) for n in range(7)]
        self.schedule(*reversed(jobs))
        self.advance_to(1_006)
        self.assertEqual(self.backend.calls, [3, 3, 1])
        self.assertEqual(self.published_ids(), [f"j{n}" for n in range(7)])
        self.assertEqual(self.held(), 0)

    def test_refusedJobRetriedWithBackoff(self):
        """
        A job the backend refuses stays held and is retried 1 s later, then
        2 s after that, then 4 s, never dropped; the jobs of the same batch
        the backend accepted are removed.  Once accepted it is removed.
        """
        refusing = [True]
        self.backend.refuse = lambda job: (
            Unavailable("broker down") if job.job_id == "b" and refusing[0] else None
        )
        self.start()
        self.schedule(make_job("a", 1_000), make_job("b", 1_000), make_job("c", 1_000))
        self.advance_to(1_000)
        self.assertEqual(self.published_ids(), ["a", "c"])
        self.assertEqual(self.held(), 1)
        self.assertEqual(self.successResultOf(self.store.next_due(ns_at(1_000))), ns_at(2_000))
        attempts = []
        for ms in [1_999, 2_000, 3_999, 4_000, 7_999, 8_000]:
            self.advance_to(ms)
            attempts.append((ms, len(self.backend.calls)))
        self.assertEqual(
            attempts,
            [(1_999, 1), (2_000, 2), (3_999, 2), (4_000, 3), (7_999, 3), (8_000, 4)],
        )
        self.assertEqual(self.held(), 1)
        refusing[0] = False
        self.advance_to(15_999)
        self.assertEqual(len(self.backend.calls), 4)
        self.advance_to(16_000)
        self.assertEqual(self.published_ids(), ["a", "c", "b"])
        self.assertEqual(self.held(), 0)

    def test_refusalLogged(self):
        """
        A refused dispatch logs a warning with how many jobs stay held and
        when they are retried.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.backend.refuse = lambda job: Unavailable("broker down")
        self.start()
        self.schedule(make_job("a", 1_000), make_job("b", 1_000))
        self.advance_to(1_000)
        [event] = [e for e in observer if e.get("log_source") is self.scheduler and "delay" in e]
        self.assertEqual(
            (event["log_level"], event["count"], event["delay"]), (LogLevel.warn, 2, 1)
        )
        self.assertEqual(self.held(), 2)

    def test_backoffResetsAfterSuccess(self):
        """
        After a dispatch in which every due job was accepted, the next
        refusal is retried after 1 s again, not after the next step.
        """
        refusing = [True]
        self.backend.refuse = lambda job: Unavailable("down") if refusing[0] else None
        self.start()
        self.schedule(make_job("a", 1_000))
        self.advance_to(1_000)  # refused: retry at 2 s
        self.advance_to(2_000)  # refused: retry at 4 s
        refusing[0] = False
        self.advance_to(4_000)  # accepted
        self.assertEqual(self.published_ids(), ["a"])
        refusing[0] = True
        self.schedule(make_job("b", 10_000))
        self.advance_to(10_000)  # refused: retry after 1 s, not 4 s
        self.assertEqual(len(self.backend.calls), 4)
        refusing[0] = False
        self.advance_to(10_999)
        self.assertEqual(len(self.backend.calls), 4)
        self.advance_to(11_000)
        self.assertEqual(self.published_ids(), ["a", "b"])
        self.assertEqual(self.held(), 0)

    def test_startWithHeldJobs(self):
        """
        C{startService} with jobs already held arms the timer for the
        earliest: each is published at its own C{run_at}.
        """
        self.successResultOf(
            self.store.add([make_job("later", 3_000), make_job("earliest", 1_000)])
        )
        self.start()
        self.advance_to(999)
        self.assertEqual(self.published_ids(), [])
        self.advance_to(1_000)
        self.assertEqual(self.published_ids(), ["earliest"])
        self.advance_to(3_000)
        self.assertEqual(self.published_ids(), ["earliest", "later"])

    def test_startWithOverdueJobs(self):
        """
        C{startService} with held jobs whose C{run_at} has passed publishes
        them on the next reactor turn.
        """
        self.successResultOf(self.store.add([make_job("overdue", -5_000)]))
        self.start()
        self.clock.advance(0)
        self.assertEqual(self.published_ids(), ["overdue"])
        self.assertEqual(self.held(), 0)

    def test_nothingBeforeStart(self):
        """
        A scheduler not started publishes nothing, even once jobs are due.
        """
        scheduler = Scheduler(self.store, self.backend, self.clock)
        self.successResultOf(scheduler.schedule([make_job("a", 1_000)]))
        self.advance_to(5_000)
        self.assertEqual(self.backend.calls, [])
        self.assertEqual(self.held(), 1)

    def test_stopWithHeldJobsWarns(self):
        """
        C{stopService} with jobs held in a store that is not durable logs
        one warning carrying the number of jobs dropped, and publishes none
        of them, then or later.
        """
        self.start()
        self.schedule(make_job("a", 10_000), make_job("b", 20_000))
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.successResultOf(self.scheduler.stopService())
        [event] = [e for e in observer if e.get("log_source") is self.scheduler]
        self.assertEqual((event["log_level"], event["count"]), (LogLevel.warn, 2))
        self.advance_to(30_000)
        self.assertEqual(self.backend.calls, [])

    def test_stopWithNothingHeld(self):
        """
        C{stopService} with no job held logs nothing.
        """
        self.start()
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.successResultOf(self.scheduler.stopService())
        self.assertEqual([e for e in observer if e.get("log_source") is self.scheduler], [])

    def test_stopWaitsForDispatch(self):
        """
        C{stopService} during a publish in flight fires only once that
        publish is done and its jobs are removed; it publishes nothing more.
        """
        self.start()
        self.schedule(make_job("a", 1_000), make_job("later", 5_000))
        gate = self.backend.gate = Deferred()
        self.advance_to(1_000)
        self.assertEqual((self.backend.calls, self.published_ids()), ([1], []))
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        stopped = self.scheduler.stopService()
        self.assertNoResult(stopped)
        gate.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.published_ids(), ["a"])
        self.assertEqual(self.held(), 1)
        [event] = [e for e in observer if e.get("log_source") is self.scheduler]
        self.assertEqual(event["count"], 1)
        self.advance_to(10_000)
        self.assertEqual(self.backend.calls, [1])

    def test_scheduleDuringDispatch(self):
        """
        A job scheduled while a publish is in flight is published at its
        own C{run_at} once that publish is done.
        """
        self.start()
        self.schedule(make_job("a", 1_000))
        gate = self.backend.gate = Deferred()
        self.advance_to(1_000)
        self.schedule(make_job("b", 2_000))
        self.backend.gate = None
        gate.callback(None)
        self.assertEqual(self.published_ids(), ["a"])
        self.advance_to(1_999)
        self.assertEqual(self.published_ids(), ["a"])
        self.advance_to(2_000)
        self.assertEqual(self.published_ids(), ["a", "b"])

    def test_subMicrosecondRunAt(self):
        """
        A job whose C{run_at} falls between two whole microseconds (a
        client may send any nanos) is published once the clock passes it,
        without re-arming the timer again and again at one instant.
        """
        clock = self.clock = SpinGuardClock()
        clock.advance(START)
        self.start()
        job = make_job("a", 10_000)
        job.run_at.FromNanoseconds(ns_at(10_000) + 400)
        self.schedule(job)
        clock.advance(10.0000004)
        clock.advance(0.000001)
        self.assertEqual((clock.spun, self.published_ids()), (False, ["a"]))


    def test_permanentRefusalDropped(self):
        """
        A job the backend refuses for good (INVALID_ARGUMENT: it will never
        take it) is logged at error level with its id and dropped: removed
        from the store, never retried.  The jobs of the same batch the
        backend accepted are published.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.backend.refuse = lambda job: (
            InvalidArgument("job", "too large for Pub/Sub") if job.job_id == "b" else None
        )
        self.start()
        self.schedule(make_job("a", 1_000), make_job("b", 1_000), make_job("c", 1_000))
        self.advance_to(1_000)
        self.assertEqual((self.published_ids(), self.held()), (["a", "c"], 0))
        self.advance_to(120_000)
        self.assertEqual(self.backend.calls, [3])
        [event] = [e for e in observer if e["log_level"] == LogLevel.error]
        self.assertEqual(
            (event["job_id"], event["code"], event["error"]),
            ("b", "INVALID_ARGUMENT", "job: too large for Pub/Sub"),
        )
        self.assertEqual(self.successResultOf(self.scheduler.stats())["dropped"], 1)

    def test_otherRefusalsRetried(self):
        """
        Only INVALID_ARGUMENT (the job itself is wrong for the broker) is
        permanent.  A refusal the broker can outgrow once an operator
        fixes it (FAILED_PRECONDITION, NOT_FOUND: a topic missing) keeps
        the job held and retried with the backoff, never dropped.
        """
        refusing = [FailedPrecondition("topic missing")]
        self.backend.refuse = lambda job: refusing[0]
        self.start()
        self.schedule(make_job("a", 1_000))
        for ms in range(1_000, 10_001, 500):
            self.advance_to(ms)
        self.assertEqual((len(self.backend.calls), self.held()), (4, 1))  # 1, 2, 4, 8 s
        refusing[0] = None
        self.advance_to(16_000)
        self.assertEqual((self.published_ids(), self.held()), (["a"], 0))
        self.assertEqual(self.successResultOf(self.scheduler.stats())["dropped"], 0)

    def test_resourceExhaustedRetried(self):
        """
        A job refused with RESOURCE_EXHAUSTED (the broker is full for now)
        stays held and is retried 1 s later.
        """
        refusing = [True]
        self.backend.refuse = lambda job: (
            ResourceExhausted("too many in flight") if refusing[0] else None
        )
        self.start()
        self.schedule(make_job("a", 1_000))
        self.advance_to(1_000)
        self.assertEqual(self.held(), 1)
        refusing[0] = False
        self.advance_to(1_999)
        self.assertEqual(self.published_ids(), [])
        self.advance_to(2_000)
        self.assertEqual((self.published_ids(), self.held()), (["a"], 0))

    def test_keepsGoingPastFailedBatch(self):
        """
        A batch the backend refuses does not stop the dispatch: the batches
        behind it are published in the same turn, and only the refused
        jobs wait for the retry.
        """
        self.backend.refuse = lambda job: (
            Unavailable("partition down") if job.job_id in ("j0", "j1") else None
        )
        self.start(batch_size=2)
        self.schedule(*[make_job(f"j{n}", 1_000 + n) for n in range(6)])
        self.advance_to(1_005)
        self.assertEqual(self.backend.calls, [2, 2, 2])
        self.assertEqual(self.published_ids(), ["j2", "j3", "j4", "j5"])
        self.assertEqual(self.held(), 2)
        self.backend.refuse = None
        self.advance_to(2_004)
        self.assertEqual(self.backend.calls, [2, 2, 2])
        self.advance_to(2_005)
        self.assertEqual(self.published_ids(), ["j2", "j3", "j4", "j5", "j0", "j1"])

    def test_wholeBatchFailureRetried(self):
        """
        A publish that fails as a whole with a refusal (the backend is
        down; even an error that would be permanent for one job) drops
        nothing: every job of the batch is retried together after the
        backoff, and the failure is logged.
        """
        for error in (Unavailable("connection reset"), InvalidArgument("jobs", "?")):
            self.backend = RecordingBackend()
            self.backend.fail_with = error
            self.store = MemoryScheduleStore()
            self.clock = task.Clock()
            self.clock.advance(START)
            self.start()
            self.schedule(make_job("a", 1_000), make_job("b", 1_000))
            self.advance_to(1_000)
            self.assertEqual((self.backend.calls, self.held()), ([2], 2))
            self.backend.fail_with = None
            self.advance_to(2_000)
            self.assertEqual((self.published_ids(), self.held()), (["a", "b"], 0))
            self.assertEqual(len(self.flushLoggedErrors(type(error))), 1)
            self.stop_if_running()

    def test_storeFailureBacksOff(self):
        """
        When the store fails (its database is down), the dispatcher logs a
        one-line warning and tries again after 1 s, 2 s, 4 s: it neither
        spins nor gives up, even with polling on, and publishes once the
        store is back.
        """
        store = self.store = FlakyStore()
        self.start(poll_interval=0.5)
        self.schedule(make_job("a", 1_000))
        store.broken = True
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.advance_to(1_000)
        attempts = []
        for ms in [1_999, 2_000, 3_999, 4_000, 7_999, 8_000]:
            self.advance_to(ms)
            attempts.append((ms, store.claims))
        self.assertEqual(
            attempts, [(1_999, 1), (2_000, 2), (3_999, 2), (4_000, 3), (7_999, 3), (8_000, 4)]
        )
        warnings = [e for e in observer if e.get("log_source") is self.scheduler]
        self.assertEqual([(e["log_level"], e["delay"]) for e in warnings],
                         [(LogLevel.warn, 1), (LogLevel.warn, 2), (LogLevel.warn, 4),
                          (LogLevel.warn, 8)])
        self.assertIn("database is down", warnings[0]["error"])
        store.broken = False
        self.advance_to(16_000)
        self.assertEqual(self.published_ids(), ["a"])

    def test_pollFindsJobsOfOtherReplicas(self):
        """
        With a poll interval, a scheduler publishes jobs that another
        replica put in the shared store (its own timer knows nothing of
        them) within one interval after they are due, never before.
        """
        self.start(poll_interval=1.0)
        self.clock.advance(0)  # the first look, at start: next at 1 s
        other = Scheduler(self.store, RecordingBackend(), self.clock)
        self.advance_to(300)
        self.successResultOf(other.schedule([make_job("elsewhere", 600)]))
        self.advance_to(599)
        self.assertEqual(self.published_ids(), [])
        self.advance_to(1_000)
        self.assertEqual(self.published_ids(), ["elsewhere"])

    def test_noPollWithoutInterval(self):
        """
        Without a poll interval, an idle scheduler arms no timer.
        """
        self.start()
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_dyingReplicaLeaseExpires(self):
        """
        Two schedulers share a store.  One claims due jobs and dies
        mid-publish (its publish never returns); the other does not
        publish them while the lease runs, and publishes each once after
        it ran out: at least once, never lost.
        """
        dying_backend = RecordingBackend()
        dying_backend.gate = Deferred()
        dying = Scheduler(self.store, dying_backend, self.clock, lease=30.0)
        dying.startService()
        dying.schedule([make_job("a", 1_000), make_job("b", 1_000)])
        self.advance_to(1_000)
        self.assertEqual(dying_backend.calls, [2])
        self.start(poll_interval=1.0, lease=30.0)
        self.advance_to(30_999)
        self.assertEqual(self.published_ids(), [])
        self.advance_to(31_000)
        self.assertEqual(self.published_ids(), ["a", "b"])
        self.assertEqual(self.held(), 0)

    def test_twoReplicasPublishOnce(self):
        """
        Two polling schedulers on one store, both taking jobs: each job is
        published once, by one of them.
        """
        other_backend = RecordingBackend()
        other = Scheduler(self.store, other_backend, self.clock, poll_interval=1.0)
        other.startService()
        self.addCleanup(other.stopService)
        self.start(poll_interval=1.0, batch_size=3)
        for n in range(20):
            (self.scheduler if n % 2 else other).schedule([make_job(f"j{n:02d}", 100 * n)])
        self.advance_to(5_000)
        ids = self.published_ids() + [job.job_id for job in other_backend.published]
        self.assertEqual(sorted(ids), [f"j{n:02d}" for n in range(20)])

    def test_stats(self):
        """
        C{stats} fires with the jobs held, how late the earliest due one
        is, and how many were published and dropped.
        """
        self.backend.refuse = lambda job: (
            Unavailable("down") if job.job_id == "late" else
            InvalidArgument("job", "bad") if job.job_id == "bad" else None
        )
        self.start()
        self.assertEqual(
            self.successResultOf(self.scheduler.stats()),
            {"held": 0, "oldest_due_lateness_s": 0.0, "published": 0, "dropped": 0},
        )
        self.schedule(make_job("late", 1_000), make_job("ok", 1_000), make_job("bad", 1_000),
                      make_job("future", 9_000))
        self.assertEqual(self.successResultOf(self.scheduler.stats())["oldest_due_lateness_s"], 0)
        self.advance_to(3_500)
        self.assertEqual(
            self.successResultOf(self.scheduler.stats()),
            {"held": 2, "oldest_due_lateness_s": 2.5, "published": 1, "dropped": 1},
        )

    def test_statsLogged(self):
        """
        With a stats interval, the scheduler logs the numbers of L{stats}
        as one structured event each interval.
        """
        self.start(stats_interval=60.0)
        self.schedule(make_job("a", 90_000))
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.advance_to(59_000)
        self.assertEqual([e for e in observer if "held" in e], [])
        self.advance_to(60_000)
        [event] = [e for e in observer if "held" in e]
        self.assertEqual(
            (event["held"], event["oldest_due_lateness_s"], event["log_level"]),
            (1, 0.0, LogLevel.info),
        )

    def test_startFailsWhenStoreUnreachable(self):
        """
        C{startService} fails with a one-line ``ConfigError`` naming the
        store when it cannot be opened (Jack's start then stops).
        """
        store = self.store = FlakyStore()
        store.broken = True
        scheduler = Scheduler(store, self.backend, self.clock)
        error = self.failureResultOf(scheduler.startService(), ConfigError).value
        self.assertEqual(
            str(error), "cannot open the schedule store flaky: database is down"
        )
        self.successResultOf(scheduler.stopService())

    def test_stopClosesStore(self):
        """
        C{stopService} closes the store once the dispatch in flight is done.
        """
        store = self.store = FlakyStore()
        self.start()
        self.successResultOf(self.scheduler.stopService())
        self.assertTrue(store.closed)

    def dropped_events(self, observer):
        """The "Dropping ..." warnings of the scheduler: (count, text)."""
        return [(e["count"], e["log_format"]) for e in observer
                if e.get("log_source") is self.scheduler and "Dropping" in e["log_format"]]

    def test_stopPublishesDueJobs(self):
        """
        C{stopService} with a store that is not durable publishes every job
        already due, the batches behind the one in flight too, before it
        stops; it drops nothing and says so.
        """
        self.start(batch_size=100)
        self.schedule(*[make_job(f"j{n:04d}", 1_000) for n in range(1000)])
        gate = self.backend.gate = Deferred()
        self.advance_to(1_500)
        self.assertEqual(self.backend.calls, [100])
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        stopped = self.scheduler.stopService()
        self.backend.gate = None
        gate.callback(None)
        self.clock.advance(0)  # the reactor turns between batches
        self.successResultOf(stopped)
        self.assertEqual(len(self.published_ids()), 1000)
        self.assertEqual((self.held(), self.dropped_events(observer)), (0, []))

    def test_stopTellsDueFromNotDue(self):
        """
        What a store that is not durable drops at stop is logged in two
        counts: due jobs the backend did not take (with its reason), and
        jobs not due yet; a job due while a dispatch was in flight is
        tried at stop, not counted as "not due".
        """
        self.start()
        self.schedule(make_job("a", 1_000), make_job("x", 1_200), make_job("later", 5_000))
        gate = self.backend.gate = Deferred()
        self.advance_to(1_000)
        self.advance_to(1_500)  # x is due; the dispatcher is busy with a
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        stopped = self.scheduler.stopService()
        self.backend.gate = None
        self.backend.refuse = lambda job: Unavailable("broker down") if job.job_id == "x" else None
        gate.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.published_ids(), ["a"])
        [(due, due_text), (not_due, not_due_text)] = self.dropped_events(observer)
        self.assertEqual((due, not_due), (1, 1))
        self.assertIn("due scheduled job(s)", due_text)
        self.assertIn("not due yet", not_due_text)
        [event] = [e for e in observer if "Dropping" in e.get("log_format", "")
                   and "error" in e]
        self.assertEqual(event["error"], "first: x: broker down")

    def test_stopCountsJobsInBackoffAsDue(self):
        """
        Due jobs waiting for their retry when Jack stops are counted as
        due, not as "not due yet".
        """
        self.backend.refuse = lambda job: Unavailable("down")
        self.start()
        self.schedule(make_job("a", 1_000), make_job("later", 5_000))
        self.advance_to(1_000)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.successResultOf(self.scheduler.stopService())
        self.assertEqual([count for count, _ in self.dropped_events(observer)], [1, 1])

    def test_stopBounded(self):
        """
        A publish that never ends does not hold up C{stopService} past its
        C{stop_timeout}: it then says so, closes the store and fires.
        """
        store = self.store = FlakyStore()
        self.start(stop_timeout=30.0)
        self.schedule(make_job("a", 1_000), make_job("later", 90_000))
        self.backend.gate = Deferred()  # never fires
        self.advance_to(1_000)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        stopped = self.scheduler.stopService()
        self.clock.advance(29.9)
        self.assertNoResult(stopped)
        self.assertFalse(store.closed)
        self.clock.advance(0.2)
        self.successResultOf(stopped)
        self.assertTrue(store.closed)
        texts = [e["log_format"] for e in observer if e.get("log_source") is self.scheduler]
        self.assertIn("did not finish within", texts[0])
        self.assertEqual([count for count, _ in self.dropped_events(observer)], [1, 1])

    def test_removeRetriedBeforeClaiming(self):
        """
        When removing published jobs fails (the database blinked after the
        backend confirmed them), the removal is retried with the backoff
        before anything is claimed again, until it succeeds: the jobs are
        neither published nor counted twice, even after their lease.
        """
        store = self.store = FlakyStore()
        store.failing_removes = 2
        self.start(lease=5.0, poll_interval=1.0)
        self.schedule(make_job("a", 1_000), make_job("b", 1_000))
        self.advance_to(1_000)
        self.assertEqual((self.published_ids(), self.held(), store.claims), (["a", "b"], 2, 1))
        self.advance_to(2_000)  # the removal fails again: nothing claimed
        self.assertEqual((self.held(), store.claims), (2, 1))
        self.advance_to(4_000)  # the removal succeeds, then the usual look
        self.assertEqual((self.held(), store.claims), (0, 2))
        for ms in range(4_000, 30_001, 1_000):
            self.advance_to(ms)
        self.assertEqual(self.published_ids(), ["a", "b"])
        self.assertEqual(self.successResultOf(self.scheduler.stats())["published"], 2)

    def test_reactorTurnBetweenBatches(self):
        """
        A burst due at once is published one batch per reactor turn, even
        when the store and the backend answer at once: other work (Enqueue
        calls) is served between batches.
        """
        clock = self.clock = TurnClock()
        clock.advance(START)
        self.start(batch_size=100)
        clock.turn()  # the first look, at start
        self.schedule(*[make_job(f"j{n:04d}", 1_000) for n in range(1000)])
        clock.rightNow = START + 1.0
        turns = 0
        while self.held() and turns < 50:
            clock.turn()
            turns += 1
            self.assertEqual(len(self.backend.calls), turns)
        self.assertEqual((turns, len(self.published_ids())), (10, 1000))
        clock.advance(0)  # the dispatch's last look, a turn later

    def test_jobAtFaultIsolated(self):
        """
        A job that makes the backend's publish fail as a whole with an
        unexpected error (a bug it triggers) holds up no other: the batch
        is published again job by job, the others go out at once, and
        only that job is retried; after failing alone three times in a row
        it is parked, held and tried again hourly, with an error logged.
        """
        self.backend = PoisonBackend()
        self.start()
        self.schedule(make_job("good-1", 1_000), make_job("bad", 1_000), make_job("good-2", 1_000))
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.advance_to(1_000)
        self.assertEqual(self.published_ids(), ["good-1", "good-2"])
        self.assertEqual(self.backend.calls, [3, 1, 1, 1])
        self.assertEqual(self.held(), 1)
        self.advance_to(2_000)  # alone: second failure
        self.advance_to(4_000)  # third: parked
        self.assertEqual(self.backend.calls, [3, 1, 1, 1, 1, 1])
        self.assertEqual(self.successResultOf(self.store.next_due(0)),
                         ns_at(4_000) + 3600 * 10**9)
        [parked] = [e for e in observer if "Parking" in e.get("log_format", "")]
        self.assertEqual((parked["job_id"], parked["log_level"]), ("bad", LogLevel.error))
        self.schedule(make_job("good-3", 5_000))
        self.advance_to(5_000)
        self.assertEqual(self.published_ids(), ["good-1", "good-2", "good-3"])
        self.flushLoggedErrors(TypeError)

    def test_noSpinOnStaleNextDue(self):
        """
        When the store says a job is due but no claim returns it (another
        replica's claim of it is not committed yet), the dispatcher looks
        again a little later, never in a busy loop at one instant.
        """
        clock = self.clock = SpinGuardClock()
        clock.advance(START)
        store = self.store = LaggingStore()
        self.start()
        self.successResultOf(store.add([make_job("a", 1_000)]))
        self.successResultOf(store.claim(ns_at(1_000), 10, 30 * 10**9))  # "another replica"
        store.lagging = True
        self.scheduler._wake_at(ns_at(1_000))
        self.advance_to(1_000)
        for ms in range(1_000, 2_001, 10):
            self.advance_to(ms)
        self.assertFalse(clock.spun)
        self.assertLessEqual(store.claims, 25)
        self.assertGreaterEqual(store.claims, 15)


class TurnClock(task.Clock):
    """
    A L{task.Clock} that can run one reactor turn: the calls due when the
    turn begins, not those they make for the next turn.
    """

    def turn(self):
        for call in [call for call in self.calls if call.getTime() <= self.seconds()]:
            if call in self.calls:
                self.calls.remove(call)
                call.called = 1
                call.func(*call.args, **call.kw)


class PoisonBackend(RecordingBackend):
    """
    A recording backend whose publish raises an unexpected error for any
    call that carries a job whose id starts with "bad".
    """

    def publish(self, jobs):
        jobs = list(jobs)
        if any(job.job_id.startswith("bad") for job in jobs):
            self.calls.append(len(jobs))
            raise TypeError("cannot encode this job")
        return super().publish(jobs)


class LaggingStore(MemoryScheduleStore):
    """
    A memory store that counts claims and, while C{lagging}, answers
    C{next_due} with the earliest C{run_at} held although it is claimed:
    what a shared database shows while another replica's claim of it is
    not committed yet.
    """

    def __init__(self):
        super().__init__()
        self.lagging = False
        self.claims = 0

    def claim(self, now, limit, lease):
        self.claims += 1
        return super().claim(now, limit, lease)

    def next_due(self, now):
        if self.lagging:
            return self.earliest_run_at(now)
        return super().next_due(now)


class SpinGuardClock(task.Clock):
    """
    A L{task.Clock} that stops a caller re-arming zero-delay timers at one
    instant forever: past a hundred of them it pushes the timer an hour out
    and sets C{spun}, so that a busy loop fails a test instead of hanging it.
    """

    spun = False

    def __init__(self):
        super().__init__()
        self._zero_delays = (None, 0)

    def callLater(self, delay, *args, **kw):
        if delay <= 0:
            at, count = self._zero_delays
            count = count + 1 if at == self.seconds() else 1
            self._zero_delays = (self.seconds(), count)
            if count > 100:
                self.spun = True
                delay = 3600
        return super().callLater(delay, *args, **kw)


class SlowNextDueStore(MemoryScheduleStore):
    """
    A memory store whose next_due reads the store when called but answers
    only when told to, as a durable store's query answers later.
    """

    def __init__(self):
        super().__init__()
        self.waiting = []

    def next_due(self, now):
        read = []
        MemoryScheduleStore.next_due(self, now).addCallback(read.append)
        d = Deferred()
        self.waiting.append((d, read[0]))
        return d

    def answer(self):
        waiting, self.waiting = self.waiting, []
        for d, value in waiting:
            d.callback(value)


class WakeDuringDispatchTests(unittest.SynchronousTestCase):
    def test_schedule_during_dispatch(self):
        """
        A job scheduled while a dispatch is finishing is published at its own
        time, even when the dispatch read a later next_due before it was held.
        """
        clock = task.Clock()
        clock.advance(START)
        store = SlowNextDueStore()
        backend = RecordingBackend()
        scheduler = Scheduler(store, backend, clock)
        scheduler.startService()
        self.addCleanup(scheduler.stopService)
        store.answer()
        scheduler.schedule([make_job("job_first", 1000), make_job("job_late", 10_000)])
        clock.advance(1)
        self.assertEqual([job.job_id for job in backend.published], ["job_first"])
        scheduler.schedule([make_job("job_soon", 2000)])
        store.answer()  # the dispatch's next_due: +10 s, read before job_soon
        clock.advance(1)
        self.assertEqual(
            [job.job_id for job in backend.published], ["job_first", "job_soon"]
        )


class FlakyStore(MemoryScheduleStore):
    """
    A memory store whose database can be "down": while C{broken}, every
    call fails with ``Unavailable``, as a durable store's does; and the
    next C{failing_removes} removals fail so.
    """

    description = "flaky"

    def __init__(self):
        super().__init__()
        self.broken = False
        self.claims = 0
        self.closed = False
        self.failing_removes = 0

    def remove(self, job_ids):
        if self.failing_removes:
            self.failing_removes -= 1
            return self._down()
        return super().remove(job_ids)

    def _down(self):
        return fail(Unavailable("schedule store flaky: database is down"))

    def open(self):
        return self._down() if self.broken else super().open()

    def claim(self, now, limit, lease):
        self.claims += 1
        return self._down() if self.broken else super().claim(now, limit, lease)

    def next_due(self, now):
        return self._down() if self.broken else super().next_due(now)

    def close(self):
        self.closed = True
        return super().close()
