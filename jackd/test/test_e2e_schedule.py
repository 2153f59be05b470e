"""
End to end for durable scheduled jobs: ``twistd jack`` with a SQLite or
PostgreSQL schedule store, publishing to Google's Pub/Sub emulator.  Jobs
are scheduled a few seconds ahead, Jack is killed (kill -9) or stopped and
started again, and every job is pulled back from its topic, no earlier than
its run_at.
"""

import os
import signal
import time

from google.protobuf.timestamp_pb2 import Timestamp
from twisted.trial.unittest import TestCase

from jack import jobs_pb2
from jackd.test.test_e2e_pubsub import PubSubJack
from jackd.testing.daemon import JackProcess, free_port, run_twistd
from jackd.testing.postgres import fresh_schema
from jackd.testing.pubsub import shared_emulator

SECOND = 1_000_000_000

# How far ahead the jobs are scheduled: well past the stop (which takes a
# second or two here, more on a loaded machine), so that they are held
# across the restart.  The test checks that they were (it fails, saying
# why, if the stop took longer), and every job is pulled within 30 s of
# the restart whatever this is.
AHEAD_S = 8.0


def run_at_in(seconds):
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns() + int(seconds * SECOND))
    return stamp


class RestartTests(TestCase):
    """
    Jobs scheduled before Jack stops (cleanly or with kill -9) are delivered
    after it starts again on the same schedule store: none lost, none early.
    """

    def restart_and_pull(self, store_args, stop):
        setup = PubSubJack(self, shared_emulator(self), args=store_args)
        setup.jack.start()
        producer_id = setup.register()
        jobs = setup.jobs()
        scheduled = {}  # job_id -> run_at (ns)
        for n in range(4):
            run_at = run_at_in(AHEAD_S + n * 0.25)
            response = jobs.Enqueue(
                jobs_pb2.EnqueueRequest(
                    producer_id=producer_id, job_type="high-job",
                    payload=b"single %d" % n, run_at=run_at,
                ),
                timeout=10,
            )
            scheduled[response.job_id] = run_at.ToNanoseconds()
        bulk = [
            jobs_pb2.EnqueueRequest(
                producer_id=producer_id, job_type="high-job", payload=b"bulk %d" % n,
                run_at=run_at_in(AHEAD_S + (n % 5) * 0.2),
            )
            for n in range(30)
        ]
        response = jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=bulk), timeout=10)
        self.assertEqual({result.code for result in response.results}, {0})
        for result, item in zip(response.results, bulk):
            scheduled[result.job_id] = item.run_at.ToNanoseconds()

        stop(setup.jack)
        stopped_at = time.time_ns()
        self.assertLess(
            stopped_at, min(scheduled.values()),
            f"Jack took {(stopped_at - min(scheduled.values())) / SECOND + AHEAD_S:.1f}s "
            "from the first enqueue to stopping: the jobs fell due before it stopped, "
            "so this run tests no restart (raise AHEAD_S)",
        )
        self.assertEqual(setup.pull("high", 1, timeout=0.2), [], "published before its time")
        again = JackProcess(args=setup.jack.args, env=setup.jack.env)
        self.addCleanup(again.stop)
        again.start()
        received = setup.pull("high", len(scheduled), timeout=30)
        delivered = {}
        for pulled_at, message in received:
            job_id = message.message.attributes["job_id"]
            # The emulator stamps publish_time in milliseconds: compare at
            # that precision.
            published_ms = int(message.message.publish_time.timestamp() * 1000)
            delivered.setdefault(job_id, []).append(published_ms)
            self.assertGreaterEqual(published_ms, scheduled[job_id] // 1_000_000, job_id)
            self.assertGreaterEqual(pulled_at * SECOND, scheduled[job_id], job_id)
        self.assertEqual(sorted(delivered), sorted(scheduled))
        self.assertEqual(
            {job_id: len(times) for job_id, times in delivered.items() if len(times) > 1}, {}
        )
        return again

    def test_sqlite_kill9(self):
        """
        SQLite store: Jack is killed with SIGKILL while it holds the jobs;
        started again on the same file, it publishes every one of them.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "schedule.db")

        def kill(jack):
            self.assertEqual(jack.kill(), -signal.SIGKILL)

        again = self.restart_and_pull(["--schedule-store", "sqlite", "--schedule-db", path], kill)
        self.assertNotIn("Traceback", again.log())

    def test_postgres_clean_restart(self):
        """
        PostgreSQL store: Jack stops cleanly (SIGTERM) while it holds the
        jobs, saying nothing of dropping them; started again, it publishes
        every one of them.
        """
        conninfo = fresh_schema(self)

        def stop(jack):
            self.assertEqual(jack.stop(), -signal.SIGTERM)
            self.assertNotIn("Dropping", jack.log())

        again = self.restart_and_pull(
            ["--schedule-store", "postgres", "--schedule-db", conninfo], stop
        )
        self.assertNotIn("Traceback", again.log())


class StartErrorTests(TestCase):
    def test_postgres_unreachable(self):
        """
        A PostgreSQL server that cannot be reached at start stops Jack with
        one line naming the store, exit status 1, no traceback.
        """
        result = run_twistd(
            ["jack", "--grpc-port", str(free_port()), "--schedule-store", "postgres",
             "--schedule-db", "host=127.0.0.1 port=1 user=jack dbname=jack"],
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        [line] = [line for line in output.splitlines() if "Jack cannot start" in line]
        self.assertIn(
            "Jack cannot start: cannot open the schedule store postgres "
            "jack@127.0.0.1:1/jack: connection failed:",
            line,
        )
        self.assertNotIn("Traceback", output)

    def test_sqlite_second_jack(self):
        """
        A second Jack on a SQLite file that a running Jack uses does not
        start: one line naming the file, exit status 1; the first runs on.
        """
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "schedule.db")
        first = JackProcess(args=["--schedule-store", "sqlite", "--schedule-db", path])
        self.addCleanup(first.stop)
        first.start()
        result = run_twistd(
            ["jack", "--grpc-port", str(free_port()), "--schedule-store", "sqlite",
             "--schedule-db", path],
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        [line] = [line for line in output.splitlines() if "Jack cannot start" in line]
        self.assertIn(
            f"Jack cannot start: cannot open the schedule store sqlite {path}: another "
            "Jack (process ",
            line,
        )
        self.assertIn(f"({path}.lock is locked); one Jack per SQLite file", line)
        self.assertNotIn("Traceback", output)
        self.assertIsNone(first.process.poll())

    def test_sqlite_missing_directory(self):
        """
        A SQLite file in a directory that does not exist stops the start
        with one line on stderr.
        """
        result = run_twistd(
            ["jack", "--grpc-port", "0", "--schedule-store", "sqlite",
             "--schedule-db", "/nonexistent/jack/schedule.db"],
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.strip(),
            "twistd jack: SCHEDULE_DB '/nonexistent/jack/schedule.db': directory "
            "'/nonexistent/jack' does not exist",
        )
