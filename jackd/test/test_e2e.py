"""
End to end: ``twistd jack`` as a subprocess, driven by a real gRPC client the
way an application or operator would.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from jack import admin_pb2, admin_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from jackd.test.sourcetree import findSourceTree
from jackd.testing.daemon import (
    TWISTD,
    JackProcess,
    free_port,
    run_twistd,
    twistd_environment,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_until(predicate, timeout=20, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {predicate}")


def health_status(channel, service=""):
    try:
        return health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=1
        ).status
    except grpc.RpcError as error:
        return error.code()


def serving(address):
    with grpc.insecure_channel(address) as channel:
        return health_status(channel) == SERVING


class WalkthroughTests(TestCase):
    def test_walkthrough(self):
        """
        A client lists services by reflection, waits for SERVING, registers a
        producer and job type, enqueues one job and a mixed bulk; SIGTERM turns
        health NOT_SERVING and the process ends as terminated by SIGTERM.
        """
        jack = JackProcess(args=["--drain-delay", "1s"])
        jack.start()
        self.addCleanup(jack.stop)
        channel = jack.channel()

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        [listing] = list(reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        ))
        self.assertEqual(
            sorted(s.name for s in listing.list_services_response.service),
            ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
             "grpc.reflection.v1alpha.ServerReflection", "jack.AdminService",
             "jack.BackgroundJobs"],
        )
        for service in ["", "jack.BackgroundJobs", "jack.AdminService"]:
            self.assertEqual(health_status(channel, service), SERVING)

        admin = admin_pb2_grpc.AdminServiceStub(channel)
        producer = admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name="Billing", description="invoices")
        ).producer
        self.assertTrue(producer.producer_id.startswith("prod_"))
        job_type = admin.CreateJobType(admin_pb2.CreateJobTypeRequest(
            producer_id=producer.producer_id, name="send-invoice",
            queue=jobs_queue("QUEUE_HIGH"),
        )).job_type
        self.assertEqual(job_type.max_retries, 3)

        jobs = jobs_pb2_grpc.BackgroundJobsStub(channel)
        job_id = jobs.Enqueue(jobs_pb2.EnqueueRequest(
            producer_id=producer.producer_id, job_type="send-invoice", payload=b"{}"
        )).job_id
        self.assertTrue(job_id.startswith("job_"))

        def item(**fields):
            fields.setdefault("producer_id", producer.producer_id)
            fields.setdefault("job_type", "send-invoice")
            return jobs_pb2.EnqueueRequest(**fields)

        later = Timestamp()
        later.FromSeconds(int(time.time()) + 3600)
        response = jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=[
            item(payload=b"a"),
            item(job_type="unknown"),
            item(producer_id=""),
            item(producer_id="prod_nobody"),
            item(payload=b"x" * (1024 * 1024 + 1)),
            item(run_at=Timestamp(seconds=0, nanos=-5)),
            item(trace_id="t" * 1025),
            item(run_at=later),
        ]))
        self.assertEqual(
            [(r.index, r.code, bool(r.job_id), r.error.split(":")[0]) for r in response.results],
            [(0, 0, True, ""), (1, 5, False, "job_type"), (2, 3, False, "producer_id"),
             (3, 5, False, "producer_id"), (4, 3, False, "payload"), (5, 3, False, "run_at"),
             (6, 3, False, "trace_id"), (7, 0, True, "")],
        )
        log = wait_until(lambda: response.results[0].job_id in jack.log() and jack.log())
        self.assertIn(job_id, log)
        self.assertIn("noop backend accepted 1 job(s)", log)
        self.assertNotIn(response.results[7].job_id, log)

        jack.signal(signal.SIGTERM)
        wait_until(lambda: health_status(channel) == NOT_SERVING, timeout=5)
        self.assertEqual(jack.wait(20), -signal.SIGTERM)
        log = jack.log()
        self.assertIn("Dropping 1 scheduled job(s) held in memory", log)
        self.assertIn("Jack drained and stopped", log)
        self.assertNotIn("Traceback", log)

    def test_sigint(self):
        """SIGINT (Ctrl-C) drains and stops like SIGTERM."""
        jack = JackProcess()
        jack.start()
        self.addCleanup(jack.stop)
        jack.signal(signal.SIGINT)
        self.assertEqual(jack.wait(20), -signal.SIGINT)
        self.assertIn("Jack drained and stopped", jack.log())

    def test_scheduled_job_published_when_due(self):
        """A job with run_at a second ahead is logged by the backend after it is due."""
        jack = JackProcess()
        jack.start()
        self.addCleanup(jack.stop)
        channel = jack.channel()
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        producer_id = admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name="p")).producer.producer_id
        admin.CreateJobType(admin_pb2.CreateJobTypeRequest(producer_id=producer_id, name="t"))
        run_at = Timestamp()
        run_at.FromNanoseconds(time.time_ns() + 1_000_000_000)
        job_id = jobs_pb2_grpc.BackgroundJobsStub(channel).Enqueue(
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="t", run_at=run_at)
        ).job_id
        self.assertNotIn(job_id, jack.log())
        wait_until(lambda: job_id in jack.log(), timeout=10)
        self.assertGreaterEqual(time.time_ns(), run_at.ToNanoseconds())


def jobs_queue(name):
    from jack.job_pb2 import Queue

    return Queue.Value(name)


class StartModesTests(TestCase):
    def test_daemon_mode(self):
        """Plain `twistd jack` daemonizes, writes its pid file, serves, and stops on SIGTERM."""
        directory = tempfile.mkdtemp(prefix="jackd-")
        self.addCleanup(shutil.rmtree, directory, True)
        port = free_port()
        pidfile = os.path.join(directory, "twistd.pid")
        logfile = os.path.join(directory, "twistd.log")
        started = subprocess.run(
            [*TWISTD, "--pidfile", pidfile, "--logfile", logfile, "jack", "--grpc-port", str(port)],
            cwd=directory, env=twistd_environment(), capture_output=True, text=True, timeout=30,
        )
        self.assertEqual((started.returncode, started.stderr), (0, ""))
        pid = int(wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip()))

        def kill():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        self.addCleanup(kill)
        wait_until(lambda: serving(f"127.0.0.1:{port}"))
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), timeout=20)
        with open(logfile) as f:
            log = f.read()
        self.assertIn("Jack drained and stopped", log)
        self.assertFalse(os.path.exists(pidfile))

    def test_tac(self):
        """`twistd -ny jackd.tac` runs Jack configured from the environment."""
        source = findSourceTree()
        if source is None:
            raise SkipTest("jackd.tac is in the source tree, and there is none here")
        port = free_port()
        directory = tempfile.mkdtemp(prefix="jackd-")
        self.addCleanup(shutil.rmtree, directory, True)
        process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "-y", source.child("jackd.tac").path],
            cwd=directory, env=twistd_environment({"GRPC_PORT": str(port)}),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.addCleanup(lambda: process.poll() is None and process.kill())
        wait_until(lambda: serving(f"127.0.0.1:{port}") or process.poll() is not None)
        self.assertIsNone(process.poll())
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        self.assertEqual(process.returncode, -signal.SIGTERM)
        self.assertIn("Jack drained and stopped", output)


class StartErrorTests(TestCase):
    def assertOneLine(self, result, message):
        self.assertEqual(result.returncode, 1)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertEqual(lines[0], message)

    def test_backend_needs_setting(self):
        """The Pub/Sub backend without a project stops the start with one line."""
        self.assertOneLine(
            run_twistd(["jack", "--grpc-port", "0"], env={"QUEUE_BACKEND": "pubsub"}),
            "twistd jack: QUEUE_BACKEND=pubsub needs PUBSUB_PROJECT "
            "(--pubsub-project): the Google Cloud project of the topics",
        )

    def test_port_in_use(self):
        """A port already taken stops the start with one line naming it."""
        jack = JackProcess()
        jack.start()
        self.addCleanup(jack.stop)
        self.assertOneLine(
            run_twistd(["jack", "--grpc-port", str(jack.port)]),
            f"twistd jack: cannot listen on port {jack.port}: already in use",
        )

    def test_other_reactor(self):
        """Another reactor chosen with -r is refused with one line."""
        self.assertOneLine(
            run_twistd(["-r", "poll", "jack", "--grpc-port", "0"]),
            "twistd jack: Jack runs on Twisted's asyncio reactor, but PollReactor is "
            "installed: run twistd without -r (or with -r asyncio)",
        )

    def test_help(self):
        """`twistd jack --help` lists every option with its environment variable."""
        from jackd.tap import SETTINGS

        result = run_twistd(["jack", "--help"])
        self.assertEqual(result.returncode, 0)
        text = " ".join(result.stdout.split())
        for setting in SETTINGS:
            self.assertIn(f"--{setting.option}=", text)
            self.assertIn(f"env {setting.env};", text)


class WatchDeadlockTests(TestCase):
    timeout = 60

    def test_watchers_leaving_at_shutdown(self):
        """
        Health watchers that hang up when they see NOT_SERVING (as a load
        balancer may): the stop finishes after the drain, instead of a
        closing stream and a status send waiting on each other for ever.
        """
        return deferToThread(self._scenario)

    def _scenario(self):
        jack = JackProcess(args=["--drain-delay", "1s", "--shutdown-grace", "2s"])
        jack.start()
        self.addCleanup(jack.stop, 5)
        stub = health_pb2_grpc.HealthStub(jack.channel())
        seen = threading.Semaphore(0)

        def watch(service):
            call = stub.Watch(health_pb2.HealthCheckRequest(service=service))
            try:
                for response in call:
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        seen.release()
                    else:
                        call.cancel()
            except grpc.RpcError:
                pass

        services = ["", "jack.BackgroundJobs", "jack.AdminService"] * 3
        for service in services:
            threading.Thread(target=watch, args=(service,), daemon=True).start()
        for _ in services:
            self.assertTrue(seen.acquire(timeout=10))
        jack.signal(signal.SIGTERM)
        self.assertEqual(jack.wait(15), -signal.SIGTERM)
