"""
Tests for L{jackd.scheduler.sqlite.SQLiteScheduleStore}, on real SQLite
files in the test's temporary directory.
"""

import os
import sqlite3

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial import unittest

from jackd.errors import ConfigError, Unavailable
from jackd.scheduler import Scheduler
from jackd.scheduler.sqlite import TABLE, SQLiteScheduleStore, check_path
from jackd.test.schedule_store_mixin import (
    LEASE,
    NOW,
    SECOND,
    DurableScheduleStoreTestsMixin,
    ScheduleStoreTestsMixin,
    make_job,
)


class SQLiteScheduleStoreTests(
    ScheduleStoreTestsMixin, DurableScheduleStoreTestsMixin, unittest.TestCase
):
    """
    L{SQLiteScheduleStore} passes the ``IScheduleStore`` conformance suite
    and keeps what a durable store promises.
    """

    def make_store(self):
        self.path = os.path.join(self.mktemp(), "schedule.db")
        os.makedirs(os.path.dirname(self.path))
        return SQLiteScheduleStore(self.path, reactor)

    def reopen_store(self):
        return SQLiteScheduleStore(self.path, reactor)

    def committed_ids(self):
        with sqlite3.connect(self.path) as connection:
            return [row[0] for row in connection.execute(f"SELECT job_id FROM {TABLE}")]

    def insert_raw(self, job_id, run_at, blob):
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            connection.execute(
                f"INSERT INTO {TABLE} (job_id, run_at, due_at, job) VALUES (?, ?, ?, ?)",
                (job_id, run_at, run_at, blob),
            )
        finally:
            connection.close()

    def make_unreachable_store(self):
        return SQLiteScheduleStore(os.path.join(self.mktemp(), "missing", "x.db"), reactor)

    def test_description(self):
        """
        The description names the kind and the file's absolute path.
        """
        self.assertEqual(self.store.description, f"sqlite {os.path.abspath(self.path)}")

    @inlineCallbacks
    def test_claimsOfEarlierProcessEnd(self):
        """
        Claims left in the file by an earlier process (killed mid-dispatch,
        its claims never resolved) end when a store opens the file again:
        the jobs are claimable at once, not after the lease.  (A file
        belongs to one Jack, so no claim in it is a live one.)
        """
        yield self.store.add([make_job("a", NOW - SECOND), make_job("b", NOW + SECOND)])
        self.assertEqual((yield self.claim_ids(NOW, lease=LEASE)), ["a"])
        store = yield self.reopened()
        self.assertEqual((yield store.next_due(NOW)), NOW - SECOND)
        self.assertEqual((yield self.claim_ids(NOW, store=store)), ["a"])

    @inlineCallbacks
    def test_releasedKeepTheirTime(self):
        """
        Jobs released for a retry later stay released until then after the
        file is opened again.
        """
        yield self.store.add([make_job("a", NOW - SECOND)])
        yield self.claim_ids(NOW)
        yield self.store.release(["a"], NOW, 5 * SECOND)
        store = yield self.reopened()
        self.assertEqual((yield store.next_due(NOW)), NOW + 5 * SECOND)

    @inlineCallbacks
    def test_walAndFullSync(self):
        """
        The store's connection puts the file in WAL mode and asks SQLite to
        sync every commit to disk (synchronous=FULL), before any job is
        written, so jobs are durable when C{add} fires.  (The statements
        are watched as they run: reading the settings back would not tell,
        since FULL is also SQLite's usual default and a file stays in WAL
        mode once put in it.)
        """
        statements = []

        def connect(*args, **kwargs):
            connection = sqlite3.connect(*args, **kwargs)
            connection.set_trace_callback(statements.append)
            return connection

        path = os.path.join(os.path.dirname(self.path), "traced.db")
        store = SQLiteScheduleStore(path, reactor, timeout=2.5, connect=connect)
        self.addCleanup(store.close)
        yield store.open()
        yield store.add([make_job("a", NOW)])
        pragmas = [s for s in statements if s.startswith("PRAGMA")]
        self.assertEqual(
            pragmas,
            ["PRAGMA busy_timeout = 2500", "PRAGMA journal_mode = WAL",
             "PRAGMA synchronous = FULL"],
        )
        self.assertLess(statements.index(pragmas[-1]),
                        next(n for n, s in enumerate(statements) if s.startswith("INSERT")))
        settings = yield store._run(
            lambda connection: [
                connection.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous")
            ]
        )
        self.assertEqual(settings, ["wal", 2])

    @inlineCallbacks
    def test_secondStoreOnFileRefused(self):
        """
        A second store on a file that an open store holds (a second Jack)
        fails C{open} with a one-line ``ConfigError`` naming the file, and
        leaves the first one's claims alone; once the first is closed, the
        file opens again.
        """
        yield self.store.add([make_job("a", NOW - SECOND)])
        self.assertEqual((yield self.claim_ids(NOW)), ["a"])
        second = SQLiteScheduleStore(self.path, reactor)
        self.addCleanup(second.close)
        error = yield self.assertFailure(second.open(), ConfigError)
        self.assertEqual(
            str(error),
            f"cannot open the schedule store sqlite {os.path.abspath(self.path)}: "
            f"another Jack (process {os.getpid()}) is using it "
            f"({os.path.abspath(self.path)}.lock is locked); one Jack per SQLite file",
        )
        self.assertEqual((yield self.claim_ids(NOW)), [])
        yield second.close()
        yield self.store.close()
        third = SQLiteScheduleStore(self.path, reactor)
        self.addCleanup(third.close)
        yield third.open()
        self.assertEqual((yield self.claim_ids(NOW, store=third)), ["a"])

    @inlineCallbacks
    def test_secondJackDoesNotStart(self):
        """
        A scheduler whose SQLite file another Jack holds does not start:
        its start fails with that one-line ``ConfigError``, as it is.
        """
        scheduler = Scheduler(SQLiteScheduleStore(self.path, reactor), None, reactor)
        self.addCleanup(lambda: scheduler.running and scheduler.stopService())
        error = yield self.assertFailure(scheduler.startService(), ConfigError)
        self.assertTrue(str(error).startswith("cannot open the schedule store sqlite "))
        self.assertIn("another Jack", str(error))

    @inlineCallbacks
    def test_notAnSQLiteFile(self):
        """
        A file that is not an SQLite database fails C{open} with
        ``Unavailable`` saying so.
        """
        path = os.path.join(self.mktemp())
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        store = SQLiteScheduleStore(path, reactor)
        self.addCleanup(store.close)
        error = yield self.assertFailure(store.open(), Unavailable)
        self.assertIn("not a database", str(error))

    @inlineCallbacks
    def test_closedStoreRefuses(self):
        """
        After C{close}, calls fail with ``Unavailable`` instead of hanging;
        closing again does nothing.
        """
        yield self.store.close()
        yield self.assertFailure(self.store.count(), Unavailable)
        yield self.store.close()

    def test_timeoutFromOptions(self):
        """
        SCHEDULE_DB_TIMEOUT is how long a write waits for the file's lock.
        """
        store = SQLiteScheduleStore.from_options(
            {"schedule-db": self.path, "schedule-db-timeout": 3.0}, reactor
        )
        self.assertEqual(store._timeout, 3.0)


class CheckPathTests(unittest.SynchronousTestCase):
    """
    L{check_path} turns an unusable SCHEDULE_DB into a one-line
    ``ConfigError``.
    """

    def test_empty(self):
        """An empty path says that SCHEDULE_DB is needed."""
        self.assertEqual(
            str(self.assertRaises(ConfigError, check_path, "")),
            "SCHEDULE_STORE=sqlite needs SCHEDULE_DB (--schedule-db): the path "
            "of the SQLite file",
        )

    def test_directory(self):
        """A directory is not a database file."""
        path = self.mktemp()
        os.makedirs(path)
        self.assertIn("is a directory", str(self.assertRaises(ConfigError, check_path, path)))

    def test_missingDirectory(self):
        """A file in a directory that does not exist cannot be created."""
        path = os.path.join(self.mktemp(), "nope", "jack.db")
        self.assertIn(
            "does not exist", str(self.assertRaises(ConfigError, check_path, path))
        )

    def test_good(self):
        """A new file in an existing directory passes."""
        check_path(os.path.join(os.path.dirname(os.path.abspath(self.mktemp())), "j.db"))
