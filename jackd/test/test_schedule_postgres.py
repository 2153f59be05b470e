"""
Tests for L{jackd.scheduler.postgres.PostgresScheduleStore}, on the real
PostgreSQL server, each in a fresh schema (L{jackd.testing.postgres}).
"""

import time

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial import unittest

from jackd.errors import ConfigError, Unavailable
from jackd.scheduler import Scheduler
from jackd.scheduler.postgres import (
    TABLE,
    PostgresScheduleStore,
    parse_conninfo,
    with_timeouts,
)
from jackd.test.schedule_store_mixin import (
    LEASE,
    NOW,
    SECOND,
    DurableScheduleStoreTestsMixin,
    ScheduleStoreTestsMixin,
    make_job,
)
from jackd.testing.backends import RecordingBackend
from jackd.testing.postgres import connect, fresh_schema, terminate_backends


class PostgresScheduleStoreTests(
    ScheduleStoreTestsMixin, DurableScheduleStoreTestsMixin, unittest.TestCase
):
    """
    L{PostgresScheduleStore} passes the ``IScheduleStore`` conformance
    suite and keeps what a durable store promises.  The suite drives the
    time, so these stores take the caller's C{now} instead of the
    database's clock (L{DatabaseClockTests} check that one).
    """

    def make_store(self):
        self.conninfo = fresh_schema(self)
        return PostgresScheduleStore(self.conninfo, database_clock=False)

    def reopen_store(self):
        return PostgresScheduleStore(self.conninfo, database_clock=False)

    def committed_ids(self):
        with connect(self.conninfo) as connection:
            return [row[0] for row in connection.execute(f"SELECT job_id FROM {TABLE}")]

    def insert_raw(self, job_id, run_at, blob):
        with connect(self.conninfo) as connection:
            connection.execute(
                f"INSERT INTO {TABLE} (job_id, run_at, due_at, job) VALUES (%s, %s, %s, %s)",
                (job_id, run_at, run_at, blob),
            )

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
        yield self.claim_ids(NOW)
        store = yield self.reopened()
        self.assertEqual((yield self.claim_ids(NOW + LEASE - 1, store=store)), [])
        self.assertEqual((yield self.claim_ids(NOW + LEASE, store=store)), ["a"])

    @inlineCallbacks
    def test_openTwiceConcurrently(self):
        """
        Replicas starting at the same moment on a new database both open:
        the schema is created once, without a race.
        """
        stores = [PostgresScheduleStore(self.conninfo, database_clock=False)
                  for _ in range(4)]
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
        self.stores = [PostgresScheduleStore(conninfo, database_clock=False) for _ in range(2)]
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
                store.claim(NOW, 37, LEASE) for store in (a, b, a, b)
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
        yield a.claim(NOW, 10, LEASE)
        self.assertEqual(len((yield b.claim(NOW + LEASE, 10, LEASE))), 1)
        yield a.release(["j"], NOW, LEASE)
        self.assertEqual((yield b.next_due(NOW)), NOW + 2 * LEASE)


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


class SkewedClock:
    """
    The reactor's clock, read C{skew} seconds off (a replica whose clock is
    wrong); its timers run on the reactor as they are.
    """

    def __init__(self, skew):
        self.skew = skew

    def seconds(self):
        return reactor.seconds() + self.skew

    def callLater(self, *args, **kwargs):
        return reactor.callLater(*args, **kwargs)


HOUR = 3600 * SECOND


class DatabaseClockTests(unittest.TestCase):
    """
    A store that reads the database's clock (as Jack's are built) decides
    on it whether a job is due and when claims and releases end, whatever
    C{now} the caller passes, and returns times on the caller's clock.
    The caller's clock here is an hour or years off, so the margins are
    wide: nothing depends on how fast the test runs.
    """

    @inlineCallbacks
    def setUp(self):
        self.store = PostgresScheduleStore(fresh_schema(self))
        yield self.store.open()
        self.addCleanup(self.store.close)

    @inlineCallbacks
    def test_dueOnDatabaseClock(self):
        """
        C{claim} takes the jobs due on the database's clock: none that is
        not due there, even for a caller whose clock is an hour ahead; and
        the ones that are, even for a caller whose clock is years behind.
        """
        real = time.time_ns()
        yield self.store.add([make_job("past", real - SECOND), make_job("future", real + HOUR)])
        self.assertEqual([job.job_id for job in (yield self.store.claim(NOW, 10, LEASE))],
                         ["past"])
        self.assertEqual((yield self.store.claim(real + 2 * HOUR, 10, LEASE)), [])
        self.assertEqual((yield self.store.count_due(real + 2 * HOUR)), 1)

    @inlineCallbacks
    def test_leaseAndReleaseOnDatabaseClock(self):
        """
        A claim's lease and a release's delay run from the database's now:
        a caller whose clock is an hour ahead cannot claim the job again
        before they end.
        """
        yield self.store.add([make_job("a", time.time_ns() - SECOND)])
        self.assertEqual(len((yield self.store.claim(NOW, 10, HOUR))), 1)
        self.assertEqual((yield self.store.claim(time.time_ns() + 2 * HOUR, 10, LEASE)), [])
        yield self.store.release(["a"], NOW, HOUR)
        self.assertEqual((yield self.store.claim(time.time_ns() + 2 * HOUR, 10, LEASE)), [])
        yield self.store.release(["a"], NOW, 0)  # not claimed: ignored
        self.assertEqual((yield self.store.claim(time.time_ns() + 2 * HOUR, 10, LEASE)), [])

    @inlineCallbacks
    def test_timesOnCallersClock(self):
        """
        C{next_due} and C{earliest_run_at} are on the caller's clock: as far
        from the caller's C{now} as they are from the database's.
        """
        real = time.time_ns()
        yield self.store.add([make_job("a", real + HOUR)])
        caller_now = NOW  # years behind
        for reading in ((yield self.store.next_due(caller_now)),
                        (yield self.store.earliest_run_at(caller_now))):
            self.assertLess(abs(reading - (caller_now + HOUR)), 60 * SECOND)


class SkewedReplicaTests(unittest.TestCase):
    """
    Schedulers whose clocks are wrong by an hour, on one PostgreSQL
    database, in real time: a fast one publishes nothing early, and a slow
    one publishes on time.
    """

    def setUp(self):
        self.conninfo = fresh_schema(self)

    @inlineCallbacks
    def start_replica(self, backend, skew):
        scheduler = Scheduler(
            PostgresScheduleStore(self.conninfo), backend, SkewedClock(skew),
            poll_interval=0.1,
        )
        yield scheduler.startService()
        self.addCleanup(scheduler.stopService)
        return scheduler

    @inlineCallbacks
    def test_fastClockNotEarly(self):
        """
        A replica whose clock runs an hour fast publishes a job no earlier
        than its ``run_at`` (on the clock of this machine and database).
        """
        backend = TimedBackend()
        fast = yield self.start_replica(backend, 3600)
        jobs = [future_job(f"job-{n}", 1.5) for n in range(5)]
        yield fast.schedule(jobs)
        yield wait_until(lambda: len(backend.published) >= 5)
        early = [job.job_id for job in jobs
                 if backend.accepted_at[job.job_id][0] < job.run_at.ToNanoseconds()]
        self.assertEqual(early, [])

    @inlineCallbacks
    def test_slowClockOnTime(self):
        """
        A replica whose clock runs an hour slow publishes a job when it is
        due on the database's clock, not an hour late.
        """
        backend = TimedBackend()
        slow = yield self.start_replica(backend, -3600)
        job = future_job("job", 0.3)
        yield slow.schedule([job])
        yield wait_until(lambda: backend.published, timeout=30)
        self.assertGreaterEqual(backend.accepted_at["job"][0], job.run_at.ToNanoseconds())


class TimeoutTests(unittest.TestCase):
    """
    A database that stops answering (here: another session holds a lock on
    the table, as a migration would; a network partition looks the same to
    the store) fails each operation with ``Unavailable`` within the store's
    timeout, instead of hanging Enqueue, the dispatcher and shutdown.
    """

    def setUp(self):
        self.conninfo = fresh_schema(self)

    @inlineCallbacks
    def open_store(self, conninfo=None, **kwargs):
        store = PostgresScheduleStore(conninfo or self.conninfo, **kwargs)
        self.addCleanup(store.close)
        yield store.open()
        return store

    def lock_table(self):
        """Hold an exclusive lock on the table until the test ends."""
        locker = connect(self.conninfo, autocommit=False)
        locker.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")

        def unlock():
            if not locker.closed:
                locker.rollback()
                locker.close()

        self.addCleanup(unlock)
        return unlock

    def bounded(self, d, seconds=20):
        """C{d}, failing the test if it has not fired within C{seconds}."""
        return d.addTimeout(seconds, reactor)

    @inlineCallbacks
    def test_serverSettings(self):
        """
        Connections carry a statement_timeout and lock_timeout of the
        store's timeout, TCP keepalives, a tcp_user_timeout and a connect
        timeout.
        """
        store = yield self.open_store(timeout=2.5)

        async def show(connection):
            return [(await (await connection.execute(f"SHOW {name}")).fetchone())[0]
                    for name in ("statement_timeout", "lock_timeout")]

        self.assertEqual((yield store._run(show)), ["2500ms", "2500ms"])
        params = conninfo_to_dict(with_timeouts(self.conninfo, 2.5))
        self.assertEqual(
            {key: params[key] for key in ("keepalives", "keepalives_idle",
                                          "keepalives_interval", "keepalives_count",
                                          "tcp_user_timeout", "connect_timeout")},
            {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
             "keepalives_count": "3", "tcp_user_timeout": "2500", "connect_timeout": "5"},
        )

    def test_settingsOfConninfoWin(self):
        """
        Settings that SCHEDULE_DB gives itself are kept as they are.
        """
        conninfo = make_conninfo(
            self.conninfo, options="-c search_path=x -c statement_timeout=1min",
            keepalives_idle="99", tcp_user_timeout="7", connect_timeout="2",
        )
        params = conninfo_to_dict(with_timeouts(conninfo, 2.5))
        self.assertEqual(params["options"], "-c search_path=x -c statement_timeout=1min "
                         "-c lock_timeout=2500")
        self.assertEqual((params["keepalives_idle"], params["tcp_user_timeout"],
                          params["connect_timeout"]), ("99", "7", "2"))

    @inlineCallbacks
    def test_lockedTable(self):
        """
        With the table locked by another session, C{add} and C{claim} fail
        with ``Unavailable`` within the timeout (the server's lock_timeout
        ends the wait); once the lock is gone the store works again.
        """
        store = yield self.open_store(timeout=1.0)
        unlock = self.lock_table()
        for call in (lambda: store.add([make_job("a", NOW)]),
                     lambda: store.claim(NOW, 10, LEASE)):
            error = yield self.bounded(self.assertFailure(call(), Unavailable))
            self.assertIn("schedule store", str(error))
        unlock()
        yield store.add([make_job("a", NOW)])
        self.assertEqual((yield store.count()), 1)

    @inlineCallbacks
    def test_noAnswer(self):
        """
        With the server's own timeouts off (SCHEDULE_DB says so), a
        database that does not answer still fails the operation with
        ``Unavailable`` once the store's timeout has passed, naming it; the
        store recovers once the database answers again.
        """
        conninfo = make_conninfo(
            self.conninfo,
            options=conninfo_to_dict(self.conninfo)["options"]
            + " -c statement_timeout=0 -c lock_timeout=0",
        )
        store = yield self.open_store(conninfo, timeout=1.0)
        unlock = self.lock_table()
        error = yield self.bounded(
            self.assertFailure(store.add([make_job("a", NOW)]), Unavailable)
        )
        self.assertIn("no answer within 1s", str(error))
        unlock()
        yield self.bounded(store.add([make_job("a", NOW)]))
        self.assertEqual((yield store.count()), 1)

    @inlineCallbacks
    def test_closeEndsOperationsInFlight(self):
        """
        C{close} fails at once the operations in flight, the one on a
        connection and the one waiting for a free connection, with
        ``Unavailable``; later calls fail the same way.
        """
        conninfo = make_conninfo(
            self.conninfo,
            options=conninfo_to_dict(self.conninfo)["options"]
            + " -c statement_timeout=0 -c lock_timeout=0",
        )
        store = yield self.open_store(conninfo, pool_size=1, timeout=60.0)
        self.lock_table()
        running = store.add([make_job("a", NOW)])
        waiting = store.count()
        yield deferLater(reactor, 0.2, lambda: None)
        yield store.close()
        for d in (running, waiting, store.count()):
            error = yield self.bounded(self.assertFailure(d, Unavailable), 10)
            self.assertIn("closed", str(error))

    @inlineCallbacks
    def test_stopWhileDatabaseHangs(self):
        """
        A scheduler whose database stops answering mid-dispatch still
        stops: the dispatch fails within the store's timeout and
        C{stopService} fires.
        """
        backend = RecordingBackend()
        store = PostgresScheduleStore(self.conninfo, timeout=1.0)
        scheduler = Scheduler(store, backend, reactor, poll_interval=0.1)
        yield scheduler.startService()
        self.lock_table()
        yield deferLater(reactor, 0.5, lambda: None)  # a dispatch is stuck now
        yield self.bounded(scheduler.stopService())
        self.flushLoggedErrors(Unavailable)


class TransientErrorTests(unittest.TestCase):
    """
    Errors the database raises for a while (a read-only server during a
    failover, connections that died in the pool) are ``Unavailable``, or
    are not seen by the caller at all; errors at open are one line.
    """

    def setUp(self):
        self.conninfo = fresh_schema(self)

    @inlineCallbacks
    def test_readOnlyServerUnavailable(self):
        """
        A server that refuses writes (a standby after a failover, or set
        read-only) fails C{add} with ``Unavailable``, not an unexpected
        error (INTERNAL).
        """
        yield PostgresScheduleStore(self.conninfo).open()
        read_only = make_conninfo(
            self.conninfo,
            options=conninfo_to_dict(self.conninfo)["options"]
            + " -c default_transaction_read_only=on",
        )
        store = PostgresScheduleStore(read_only)
        self.addCleanup(store.close)
        error = yield self.assertFailure(store.add([make_job("a", NOW)]), Unavailable)
        self.assertIn("read-only transaction", str(error))

    @inlineCallbacks
    def test_missingSchemaOneLine(self):
        """
        A search_path naming no existing schema fails C{open} with
        ``Unavailable`` in one line, and the scheduler's start with a
        one-line ``ConfigError``.
        """
        conninfo = make_conninfo(self.conninfo, options="-c search_path=jack_no_such_schema")
        store = PostgresScheduleStore(conninfo)
        error = yield self.assertFailure(store.open(), Unavailable)
        self.assertEqual(
            str(error),
            f"schedule store {store.description}: no schema has been selected to create in",
        )
        scheduler = Scheduler(PostgresScheduleStore(conninfo), RecordingBackend(), reactor)
        error = yield self.assertFailure(scheduler.startService(), ConfigError)
        self.assertNotIn("\n", str(error))
        self.assertTrue(str(error).startswith("cannot open the schedule store postgres "))
        yield scheduler.stopService()

    @inlineCallbacks
    def test_deadPooledConnectionsReplaced(self):
        """
        After the server ended every pooled connection (a restart, a
        failover), the next calls all succeed: a dead connection is
        replaced, and the other idle ones with it, instead of each failing
        one call with ``Unavailable``.
        """
        store = PostgresScheduleStore(self.conninfo)
        self.addCleanup(store.close)
        yield store.open()
        yield gatherResults([store.add([make_job(f"warm-{n}", NOW)]) for n in range(4)])
        self.assertEqual(terminate_backends(self.conninfo), 4)
        for n in range(6):
            yield store.add([make_job(f"after-{n}", NOW)])
        self.assertEqual((yield store.count()), 10)
