"""
Tests for the queue backends that need no broker: L{jackd.backends.noop}
and L{jackd.testing.backends.RecordingBackend}.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial import unittest

from jack.job_pb2 import Queue
from jackd.backends.noop import SUMMARY_INTERVAL, NoopBackend
from jackd.errors import InvalidArgument, Unavailable
from jackd.test.backend_mixin import QUEUES, QueueBackendTestsMixin, make_job
from jackd.testing.backends import RecordingBackend


class NoopBackendTests(QueueBackendTestsMixin, unittest.TestCase):
    """
    L{NoopBackend} passes the ``IQueueBackend`` conformance suite.
    """

    def make_backend(self):
        return NoopBackend()


class RecordingBackendTests(QueueBackendTestsMixin, unittest.TestCase):
    """
    L{RecordingBackend} passes the ``IQueueBackend`` conformance suite, so
    tests above the backend seam can trust it to behave as a backend.
    """

    def make_backend(self):
        return RecordingBackend()


class NoopLoggingTests(unittest.SynchronousTestCase):
    """
    What only the noop backend does: it delivers nothing, so what it logs is
    the only trace of the jobs it accepted.  A real backend logs no job per
    publish, so these tests are not in the conformance suite.
    """

    def setUp(self):
        self.clock = Clock()
        self.backend = NoopBackend(self.clock)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.events = lambda: [e for e in observer if e.get("log_source") is self.backend]

    def test_startWarnsNotDelivered(self):
        """
        C{startService} logs one warning saying accepted jobs are never
        delivered.
        """
        self.backend.startService()
        self.addCleanup(self.backend.stopService)
        [event] = self.events()
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertIn("never delivered", formatEvent(event))

    def test_publishesLogged(self):
        """
        A C{publish} after a quiet spell logs one event at once, carrying
        the number of jobs (C{count}) and, for each job, its id, producer,
        type and queue name (C{jobs}), with nothing left unlisted.
        """
        jobs = [
            make_job(n, queue=queue, producer_id=f"prod_{n}", job_type=f"type_{n}")
            for n, queue in enumerate(QUEUES)
        ]
        self.successResultOf(self.backend.publish(jobs))
        self.clock.advance(SUMMARY_INTERVAL)  # a quiet spell
        self.successResultOf(self.backend.publish([make_job(9, queue=Queue.QUEUE_HIGH)]))
        first, second = self.events()
        self.assertEqual(first["count"], 4)
        self.assertEqual(first["unlisted"], 0)
        self.assertEqual(
            first["jobs"],
            [
                {"job_id": job.job_id, "producer_id": f"prod_{n}", "job_type": f"type_{n}",
                 "queue": name}
                for n, (job, name) in enumerate(
                    zip(jobs, ["immediate", "high", "medium", "low"])
                )
            ],
        )
        self.assertEqual(second["count"], 1)
        self.assertEqual([j["job_id"] for j in second["jobs"]], [make_job(9).job_id])
        self.assertEqual(second["jobs"][0]["queue"], "high")
        self.assertIn(make_job(9).job_id, formatEvent(second))

    def test_busyPublishesSummed(self):
        """
        Publishes within SUMMARY_INTERVAL of a logged one are summed up in
        one event at the interval's end (count, calls, the first ten jobs);
        a steady load logs once per interval; stopping logs what is held.
        """
        self.successResultOf(self.backend.publish([make_job(0)]))
        for n in range(1, 31):
            self.successResultOf(self.backend.publish([make_job(n)]))
        self.assertEqual(len(self.events()), 1)
        self.clock.advance(SUMMARY_INTERVAL)
        first, summary = self.events()
        self.assertEqual((summary["count"], summary["calls"], summary["unlisted"]), (30, 30, 20))
        self.assertEqual(
            [j["job_id"] for j in summary["jobs"]], [make_job(n).job_id for n in range(1, 11)]
        )
        self.assertIn("30 more job(s) in 30 call(s)", formatEvent(summary))
        self.successResultOf(self.backend.publish([make_job(40), make_job(41)]))
        self.assertEqual(len(self.events()), 2)  # still within a window
        self.backend.startService()
        self.backend.stopService()
        last = self.events()[-1]
        self.assertEqual((last["count"], last["calls"]), (2, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(SUMMARY_INTERVAL)  # the window ended: next logs at once
        self.successResultOf(self.backend.publish([make_job(50)]))
        self.assertEqual(self.events()[-1]["count"], 1)
        self.assertEqual(self.events()[-1]["jobs"][0]["job_id"], make_job(50).job_id)

    def test_bulkListsTen(self):
        """
        A publish of 1000 jobs logs one event that lists the first 10 jobs
        and says 990 more were not listed.
        """
        jobs = [make_job(n) for n in range(1000)]
        outcomes = self.successResultOf(self.backend.publish(jobs))
        self.assertEqual(outcomes, [None] * 1000)
        [event] = self.events()
        self.assertEqual(event["count"], 1000)
        self.assertEqual([j["job_id"] for j in event["jobs"]], [j.job_id for j in jobs[:10]])
        self.assertEqual(event["unlisted"], 990)
        self.assertIn("990", formatEvent(event))


class RecordingBackendOnlyTests(unittest.SynchronousTestCase):
    """
    The knobs only L{RecordingBackend} has, which tests of the scheduler and
    the enqueue path use to stand in for a broker that refuses or is slow.
    """

    def setUp(self):
        self.backend = RecordingBackend()

    def test_recordsPublished(self):
        """
        C{published} holds every job accepted, in order; C{calls} how many
        jobs each publish carried.
        """
        jobs = [make_job(n) for n in range(5)]
        self.successResultOf(self.backend.publish(jobs[:2]))
        self.successResultOf(self.backend.publish(jobs[2:]))
        self.assertEqual(self.backend.published, jobs)
        self.assertEqual(self.backend.calls, [2, 3])

    def test_refuse(self):
        """
        When C{refuse} returns an error for a job, C{publish} reports that
        error in the job's place and does not record it; jobs it returns
        C{None} for are accepted.
        """
        unavailable = Unavailable("broker down")
        invalid = InvalidArgument("payload", "too big")
        refusals = {1: unavailable, 3: invalid}
        jobs = [make_job(n) for n in range(5)]
        self.backend.refuse = lambda job: refusals.get(jobs.index(job))
        outcomes = self.successResultOf(self.backend.publish(jobs))
        self.assertEqual(outcomes, [None, unavailable, None, invalid, None])
        self.assertIs(outcomes[1], unavailable)
        self.assertEqual(self.backend.published, [jobs[0], jobs[2], jobs[4]])
        self.assertEqual(self.backend.calls, [5])

    def test_gate(self):
        """
        While C{gate} has not fired, C{publish} calls stay in flight and
        record nothing; when it fires they all fire with their outcomes.
        """
        gate = self.backend.gate = Deferred()
        first = self.backend.publish([make_job(1)])
        second = self.backend.publish([make_job(2), make_job(3)])
        self.assertNoResult(first)
        self.assertNoResult(second)
        self.assertEqual((self.backend.published, self.backend.calls), ([], [1, 2]))
        gate.callback(None)
        self.assertEqual(self.successResultOf(first), [None])
        self.assertEqual(self.successResultOf(second), [None, None])
        self.assertEqual(
            self.backend.published, [make_job(1), make_job(2), make_job(3)]
        )

    def test_gateAlreadyOpen(self):
        """
        A publish made after C{gate} fired completes at once.
        """
        self.backend.gate = Deferred()
        self.backend.gate.callback(None)
        self.assertEqual(self.successResultOf(self.backend.publish([make_job(1)])), [None])

    def test_unhealthy(self):
        """
        C{check} fires with C{healthy}.
        """
        self.backend.healthy = False
        self.assertIs(self.successResultOf(self.backend.check()), False)
