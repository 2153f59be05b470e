"""
Configuring the scheduler: the SCHEDULE_* and MAX_SCHEDULE_AHEAD settings,
the store they build, and the run_at limit on the enqueue path.
"""

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from jack.jobs_pb2 import EnqueueBulkRequest
from jackd.errors import ConfigError, InvalidArgument
from jackd.scheduler.memory import MemoryScheduleStore
from jackd.scheduler.postgres import PostgresScheduleStore
from jackd.scheduler.sqlite import SQLiteScheduleStore
from jackd.tap import build_service
from jackd.test.test_enqueue import NOW_NS, EnqueueTestCase, at
from jackd.test.test_tap import parse, parsed_options
from jackd.validation import Limits

SCHEDULE_DEFAULTS = {
    "schedule-store": "memory",
    "schedule-db": "",
    "max-schedule-ahead": 30 * 86400.0,
    "schedule-batch-size": 100,
    "schedule-lease": 60.0,
    "schedule-db-timeout": 10.0,
    "schedule-poll-interval": 1.0,
    "schedule-stats-interval": 60.0,
}

DAY_NS = 86400 * 10**9


class ScheduleOptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """The scheduler settings' defaults: memory store, 30 days ahead at most."""
        self.assertEqual(parse(keys=SCHEDULE_DEFAULTS), SCHEDULE_DEFAULTS)

    def test_environment(self):
        """Each scheduler setting is read from its environment variable."""
        expected = {
            "schedule-store": "postgres",
            "schedule-db": "postgresql://jack@db/jack",
            "max-schedule-ahead": 7 * 86400.0,
            "schedule-batch-size": 100,
            "schedule-lease": 120.0,
            "schedule-db-timeout": 2.5,
            "schedule-poll-interval": 0.25,
            "schedule-stats-interval": 300.0,
        }
        environ = {
            "SCHEDULE_STORE": "postgres",
            "SCHEDULE_DB": "postgresql://jack@db/jack",
            "MAX_SCHEDULE_AHEAD": "7d",
            "SCHEDULE_BATCH_SIZE": "100",
            "SCHEDULE_LEASE": "2m",
            "SCHEDULE_DB_TIMEOUT": "2500ms",
            "SCHEDULE_POLL_INTERVAL": "250ms",
            "SCHEDULE_STATS_INTERVAL": "5m",
        }
        self.assertEqual(parse(environ=environ, keys=expected), expected)
        self.assertEqual(
            parse(["--schedule-store", "sqlite", "--max-schedule-ahead", "1h"],
                  {"SCHEDULE_STORE": "postgres"},
                  keys=["schedule-store", "max-schedule-ahead"]),
            {"schedule-store": "sqlite", "max-schedule-ahead": 3600.0},
        )

    def test_bad_values(self):
        """A bad scheduler setting is a usage error naming it."""
        cases = [
            ({"SCHEDULE_STORE": "redis"},
             "SCHEDULE_STORE: 'redis' is not one of: memory, sqlite, postgres"),
            ({"MAX_SCHEDULE_AHEAD": "0s"}, "MAX_SCHEDULE_AHEAD: '0s' must be longer than 0s"),
            ({"MAX_SCHEDULE_AHEAD": "36501d"}, "MAX_SCHEDULE_AHEAD: '36501d' is over 36500d"),
            ({"MAX_SCHEDULE_AHEAD": "soon"}, "MAX_SCHEDULE_AHEAD: 'soon' is not a duration"),
            ({"SCHEDULE_BATCH_SIZE": "0"}, "SCHEDULE_BATCH_SIZE: '0' must be at least 1"),
            ({"SCHEDULE_LEASE": "0s"}, "SCHEDULE_LEASE: '0s' must be longer than 0s"),
            ({"SCHEDULE_DB_TIMEOUT": "0s"}, "SCHEDULE_DB_TIMEOUT: '0s' must be longer than 0s"),
            ({"SCHEDULE_POLL_INTERVAL": "x"}, "SCHEDULE_POLL_INTERVAL: 'x' is not a duration"),
        ]
        for environ, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(environ=environ)
            self.assertIn(message, str(caught.exception))

    def test_limits(self):
        """MAX_SCHEDULE_AHEAD is part of the limits the enqueue path checks."""
        self.assertEqual(
            parsed_options([], {"MAX_SCHEDULE_AHEAD": "2d"}).limits().max_schedule_ahead,
            2 * 86400.0,
        )


class BuildScheduleStoreTests(SynchronousTestCase):
    """
    build_service picks the schedule store SCHEDULE_STORE names and refuses
    an unusable SCHEDULE_DB with one line.
    """

    def build(self, environ):
        from twisted.internet import reactor

        environ = dict(environ, GRPC_PORT="0")
        return build_service(parsed_options([], environ), reactor)

    def scheduler(self, environ):
        return self.build(environ).getServiceNamed("scheduler")

    def test_memory(self):
        """The default is the memory store, with the dispatcher options applied."""
        scheduler = self.scheduler({"SCHEDULE_BATCH_SIZE": "7", "SCHEDULE_LEASE": "3s"})
        self.assertIsInstance(scheduler.store, MemoryScheduleStore)
        self.assertEqual((scheduler._batch_size, scheduler._lease_ns), (7, 3 * 10**9))

    def test_sqlite(self):
        """SCHEDULE_STORE=sqlite builds the SQLite store on SCHEDULE_DB (not opened yet)."""
        path = os.path.join(os.path.abspath(self.mktemp()) + ".db")
        store = self.scheduler({"SCHEDULE_STORE": "sqlite", "SCHEDULE_DB": path}).store
        self.assertIsInstance(store, SQLiteScheduleStore)
        self.assertEqual(store.description, f"sqlite {path}")
        self.assertFalse(os.path.exists(path))

    def test_postgres(self):
        """SCHEDULE_STORE=postgres builds the PostgreSQL store (no connection yet)."""
        store = self.scheduler(
            {"SCHEDULE_STORE": "postgres", "SCHEDULE_DB": "postgresql://jack@db:5433/jobs"}
        ).store
        self.assertIsInstance(store, PostgresScheduleStore)
        self.assertEqual(store.description, "postgres jack@db:5433/jobs")

    def test_timeouts(self):
        """SCHEDULE_DB_TIMEOUT reaches the SQLite and PostgreSQL stores."""
        path = os.path.join(os.path.abspath(self.mktemp()) + ".db")
        store = self.scheduler(
            {"SCHEDULE_STORE": "sqlite", "SCHEDULE_DB": path, "SCHEDULE_DB_TIMEOUT": "3s"}
        ).store
        self.assertEqual(store._timeout, 3.0)
        store = self.scheduler(
            {"SCHEDULE_STORE": "postgres", "SCHEDULE_DB": "postgresql://jack@db/jobs",
             "SCHEDULE_DB_TIMEOUT": "4s"}
        ).store
        self.assertEqual(store._timeout, 4.0)
        self.assertIn("statement_timeout=4000", store._pool._conninfo)

    def test_leaseOutlastsPublish(self):
        """
        With Pub/Sub, a SCHEDULE_LEASE not longer than PUBSUB_PUBLISH_TIMEOUT
        + PUBSUB_BATCH_LATENCY + SCHEDULE_DB_TIMEOUT is a one-line
        ConfigError: another replica would publish jobs still in flight.
        """
        pubsub = {"QUEUE_BACKEND": "pubsub", "PUBSUB_PROJECT": "p",
                  "PUBSUB_PUBLISH_TIMEOUT": "10s", "PUBSUB_BATCH_LATENCY": "1s",
                  "SCHEDULE_DB_TIMEOUT": "5s"}
        error = self.assertRaises(ConfigError, self.build, dict(pubsub, SCHEDULE_LEASE="16s"))
        self.assertEqual(
            str(error),
            "SCHEDULE_LEASE (16s) must be longer than PUBSUB_PUBLISH_TIMEOUT + "
            "PUBSUB_BATCH_LATENCY + SCHEDULE_DB_TIMEOUT (16s): a claim must outlast "
            "a publish and the removal after it, or another replica publishes the "
            "jobs again",
        )
        self.assertEqual(self.scheduler(dict(pubsub, SCHEDULE_LEASE="17s"))._lease_ns,
                         17 * 10**9)
        self.assertEqual(self.scheduler(pubsub)._lease_ns, 60 * 10**9)
        self.assertEqual(self.scheduler({"SCHEDULE_LEASE": "1s"})._lease_ns, 10**9)

    def test_errors(self):
        """A missing or unusable SCHEDULE_DB is a one-line ConfigError."""
        cases = [
            ({"SCHEDULE_STORE": "sqlite"}, "SCHEDULE_STORE=sqlite needs SCHEDULE_DB"),
            ({"SCHEDULE_STORE": "sqlite", "SCHEDULE_DB": "/nonexistent/dir/jack.db"},
             ("SCHEDULE_DB '/nonexistent/dir/jack.db': directory '/nonexistent/dir' "
              "does not exist")),
            ({"SCHEDULE_STORE": "postgres"}, "SCHEDULE_STORE=postgres needs SCHEDULE_DB"),
            ({"SCHEDULE_STORE": "postgres", "SCHEDULE_DB": "dbname"},
             "SCHEDULE_DB is not a PostgreSQL connection string: "),
            ({"SCHEDULE_DB": "/var/lib/jack/schedule.db"},
             "SCHEDULE_DB is set but SCHEDULE_STORE is memory"),
        ]
        for environ, message in cases:
            error = self.assertRaises(ConfigError, self.build, environ)
            self.assertTrue(str(error).startswith(message), str(error))
            self.assertNotIn("\n", str(error))


class ScheduleAheadTests(EnqueueTestCase):
    """
    A run_at further ahead than MAX_SCHEDULE_AHEAD is INVALID_ARGUMENT on
    run_at, checked before anything is held.
    """

    limits = Limits(max_schedule_ahead=30 * 86400)

    def test_at_limit(self):
        """A run_at exactly MAX_SCHEDULE_AHEAD ahead is held."""
        self.successResultOf(self.enqueuer.enqueue(self.request(run_at=at(NOW_NS + 30 * DAY_NS))))
        self.assertEqual(self.successResultOf(self.schedule.count()), 1)

    def test_past_limit(self):
        """One nanosecond further is refused, and nothing is held."""
        error = self.refused(self.request(run_at=at(NOW_NS + 30 * DAY_NS + 1)), InvalidArgument)
        self.assertEqual(error.field, "run_at")
        self.assertEqual(
            error.message,
            "run_at: is 30d ahead; at most 30d (MAX_SCHEDULE_AHEAD) are allowed",
        )
        error = self.refused(self.request(run_at=at(NOW_NS + 45 * DAY_NS)), InvalidArgument)
        self.assertEqual(
            error.message,
            "run_at: is 45d ahead; at most 30d (MAX_SCHEDULE_AHEAD) are allowed",
        )
        self.assertEqual(self.successResultOf(self.schedule.count()), 0)

    def test_far_future_timestamp(self):
        """The largest valid Timestamp (year 9999) is refused as too far ahead."""
        error = self.refused(self.request(run_at=at(253402300799 * 10**9)), InvalidArgument)
        self.assertEqual(error.field, "run_at")
        self.assertIn("MAX_SCHEDULE_AHEAD", error.message)

    def test_bulk(self):
        """In a bulk, only the item too far ahead fails; the others are accepted."""
        results = self.successResultOf(self.enqueuer.enqueue_bulk(EnqueueBulkRequest(jobs=[
            self.request(run_at=at(NOW_NS + DAY_NS)),
            self.request(run_at=at(NOW_NS + 31 * DAY_NS)),
            self.request(),
        ])))
        self.assertEqual(
            [(bool(job_id), error and error.field) for job_id, error in results],
            [(True, None), (False, "run_at"), (True, None)],
        )
        self.assertEqual(self.successResultOf(self.schedule.count()), 1)
