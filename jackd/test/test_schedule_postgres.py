"""
Tests for L{jackd.scheduler.postgres.PostgresScheduleStore}, on the real
PostgreSQL server, each in a fresh schema (L{jackd.testing.postgres}).
"""

import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from jackd.errors import ConfigError
from jackd.scheduler import Scheduler
from jackd.scheduler.postgres import TABLE, PostgresScheduleStore, parse_conninfo
from jackd.test.schedule_store_mixin import (
    LEASE,
    NOW,
    SECOND,
    DurableScheduleStoreTestsMixin,
    ScheduleStoreTestsMixin,
    make_job,
)
from jackd.testing.backends import RecordingBackend
from jackd.testing.postgres import connect, fresh_schema


class PostgresScheduleStoreTests(
    ScheduleStoreTestsMixin, DurableScheduleStoreTestsMixin, unittest.TestCase
):
    """
    L{PostgresScheduleStore} passes the ``IScheduleStore`` conformance
    suite and keeps what a durable store promises.
    """

    def make_store(self):
        self.conninfo = fresh_schema(self)
        return PostgresScheduleStore(self.conninfo)

    def reopen_store(self):
        return PostgresScheduleStore(self.conninfo)

    def committed_ids(self):
        with connect(self.conninfo) as connection:
            return [row[0] for row in connection.execute(f"SELECT job_id FROM {TABLE}")]

    def make_unreachable_store(self):
        # Port 1 on this host: nothing listens there.
        return PostgresScheduleStore("host=127.0.0.1 port=1 user=postgres dbname=jack")

    def test_description(self):
        """
        The description names the user, server and database, never a
        password.
        """
        store = PostgresScheduleStore(
            "postgresql://jack:s3cret@db.internal:6432/jobs?sslmode=require"
        )
        self.assertEqual(store.description, "postgres jack@db.internal:6432/jobs")

    @inlineCallbacks
    def test_claimSurvivesReopen(self):
        """
        A claim is kept in the database: a new store (another replica, or
        this one restarted) does not claim the job before the lease ends,
        and claims it then.
        """
        yield self.store.add([make_job("a", NOW - SECOND)])
        yield self.claim_ids(NOW, until=NOW + LEASE)
        store = yield self.reopened()
        self.assertEqual((yield self.claim_ids(NOW + LEASE - 1, store=store)), [])
        self.assertEqual((yield self.claim_ids(NOW + LEASE, store=store)), ["a"])

    @inlineCallbacks
    def test_openTwiceConcurrently(self):
        """
        Replicas starting at the same moment on a new database both open:
        the schema is created once, without a race.
        """
        stores = [PostgresScheduleStore(self.conninfo) for _ in range(4)]
        for store in stores:
            self.addCleanup(store.close)
        yield gatherResults([store.open() for store in stores])
        yield stores[0].add([make_job("a", NOW)])
        self.assertEqual((yield stores[3].count()), 1)


class ReplicaStoreTests(unittest.TestCase):
    """
    Two stores on one database, as two Jack replicas have them.
    """

    @inlineCallbacks
    def setUp(self):
        conninfo = fresh_schema(self)
        self.stores = [PostgresScheduleStore(conninfo) for _ in range(2)]
        for store in self.stores:
            yield store.open()
            self.addCleanup(store.close)

    @inlineCallbacks
    def test_concurrentClaimsDisjoint(self):
        """
        Claims made at the same moment by two replicas, over and over,
        never return one job twice, and together return every due job.
        """
        a, b = self.stores
        yield a.add([make_job(f"job-{n:04d}", NOW - n) for n in range(1000)])
        seen = []
        while True:
            claimed = yield gatherResults([
                store.claim(NOW, 37, NOW + LEASE) for store in (a, b, a, b)
            ])
            batch = [job.job_id for jobs in claimed for job in jobs]
            if not batch:
                break
            seen.extend(batch)
        self.assertEqual(len(seen), 1000)
        self.assertEqual(len(set(seen)), 1000)

    @inlineCallbacks
    def test_releaseOnlyOwnClaims(self):
        """
        A replica whose lease ran out (and whose jobs another replica
        claimed since) cannot release them: the other replica's claim
        stands.
        """
        a, b = self.stores
        yield a.add([make_job("j", NOW - SECOND)])
        yield a.claim(NOW, 10, NOW + LEASE)
        self.assertEqual(len((yield b.claim(NOW + LEASE, 10, NOW + 2 * LEASE))), 1)
        yield a.release(["j"], NOW + LEASE)
        self.assertEqual((yield b.next_due()), NOW + 2 * LEASE)


class ParseConninfoTests(unittest.SynchronousTestCase):
    """
    SCHEDULE_DB for PostgreSQL is checked before Jack starts.
    """

    def test_empty(self):
        """An empty SCHEDULE_DB says what is needed."""
        error = self.assertRaises(ConfigError, parse_conninfo, "")
        self.assertIn("SCHEDULE_STORE=postgres needs SCHEDULE_DB", str(error))

    def test_malformed(self):
        """A string that is not a connection string is one line naming SCHEDULE_DB."""
        error = self.assertRaises(ConfigError, parse_conninfo, "host=a bogus")
        self.assertTrue(
            str(error).startswith("SCHEDULE_DB is not a PostgreSQL connection string: ")
        )
        self.assertNotIn("\n", str(error))

    def test_good(self):
        """A URI and a key/value string both parse."""
        self.assertEqual(parse_conninfo("postgresql://u@h/d")["dbname"], "d")
        self.assertEqual(parse_conninfo("host=h dbname=d")["host"], "h")


class TimedBackend(RecordingBackend):
    """A recording backend that also notes when it accepted each job."""

    def __init__(self):
        super().__init__()
        self.accepted_at = {}

    def _accept(self, jobs):
        outcomes = super()._accept(jobs)
        for job, error in zip(jobs, outcomes):
            if error is None:
                self.accepted_at.setdefault(job.job_id, []).append(time.time_ns())
        return outcomes


def future_job(job_id, delay):
    """A job due C{delay} seconds from now."""
    return make_job(job_id, time.time_ns() + int(delay * SECOND))


@inlineCallbacks
def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {predicate}")
        yield deferLater(reactor, 0.05, lambda: None)


class ReplicaSchedulerTests(unittest.TestCase):
    """
    Two L{Scheduler}s on one PostgreSQL database, in this process, each with
    its own recording backend: two Jack replicas.  Real time, so checks are
    of order (never early), not of speed.
    """

    @inlineCallbacks
    def start_replica(self, backend, lease=60.0):
        scheduler = Scheduler(
            PostgresScheduleStore(self.conninfo), backend, reactor,
            batch_size=25, lease=lease, poll_interval=0.1,
        )
        yield scheduler.startService()
        self.addCleanup(scheduler.stopService)
        return scheduler

    def setUp(self):
        self.conninfo = fresh_schema(self)

    @inlineCallbacks
    def test_eachJobPublishedOnce(self):
        """
        Jobs scheduled through both replicas are each published once, by
        one of them, no earlier than their run_at.
        """
        backends = [TimedBackend(), TimedBackend()]
        replicas = []
        for backend in backends:
            replicas.append((yield self.start_replica(backend)))
        jobs = [future_job(f"job-{n:03d}", 0.3 + (n % 7) * 0.05) for n in range(300)]
        for n in range(0, 300, 20):
            yield replicas[(n // 20) % 2].schedule(jobs[n:n + 20])
        yield wait_until(lambda: sum(len(b.published) for b in backends) >= 300)
        yield deferLater(reactor, 0.5, lambda: None)  # any duplicate shows up
        accepted = {}
        for backend in backends:
            for job_id, times in backend.accepted_at.items():
                accepted.setdefault(job_id, []).extend(times)
        self.assertEqual(sorted(accepted), [job.job_id for job in jobs])
        self.assertEqual({len(times) for times in accepted.values()}, {1})
        early = [job.job_id for job in jobs
                 if accepted[job.job_id][0] < job.run_at.ToNanoseconds()]
        self.assertEqual(early, [])
        self.assertEqual((yield replicas[0].stats())["held"], 0)

    @inlineCallbacks
    def test_dyingReplica(self):
        """
        A replica that claims due jobs and dies before its backend
        confirms them (its publish never returns) leaves them to the other
        replica, which publishes each once the lease has run out, not
        before: at least once, none lost.
        """
        stuck = TimedBackend()
        stuck.gate = Deferred()
        dying = yield self.start_replica(stuck, lease=1.0)
        self.addCleanup(lambda: stuck.gate.called or stuck.gate.callback(None))
        jobs = [future_job(f"job-{n}", 0.2) for n in range(10)]
        yield dying.schedule(jobs)
        yield wait_until(lambda: stuck.calls)
        with connect(self.conninfo) as connection:
            [(lease_ends, owners)] = connection.execute(
                f"SELECT min(due_at), count(DISTINCT owner) FROM {TABLE}"
            ).fetchall()
        self.assertEqual(owners, 1)
        survivor_backend = TimedBackend()
        yield self.start_replica(survivor_backend, lease=1.0)
        yield wait_until(lambda: len(survivor_backend.published) >= 10)
        self.assertEqual(sorted(survivor_backend.accepted_at), [job.job_id for job in jobs])
        first = min(times[0] for times in survivor_backend.accepted_at.values())
        self.assertGreaterEqual(first, lease_ends)
        self.assertEqual(stuck.published, [])
