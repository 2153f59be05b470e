"""
End to end with GCS config storage: ``twistd jack`` as a subprocess keeping
producers and job types in fake-gcs-server, found through
``STORAGE_EMULATOR_HOST`` exactly as the client library defines it.
"""

import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2
from twisted.trial.unittest import TestCase

from jack import admin_pb2, admin_pb2_grpc, job_pb2, jobs_pb2, jobs_pb2_grpc
from jackd.test.test_e2e import health_status, wait_until
from jackd.testing.daemon import JackProcess, free_port, run_twistd
from jackd.testing.gcs import own_gcs, shared_gcs

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def gcs_jack(testCase, gcs, bucket, *args):
    """A Jack (not started yet) keeping its config in C{bucket} of C{gcs}."""
    jack = JackProcess(
        args=["--gcs-bucket", bucket, "--gcs-prefix", "jack", *args], env=gcs.env()
    )
    testCase.addCleanup(jack.stop)
    return jack


def admin(jack):
    return admin_pb2_grpc.AdminServiceStub(jack.channel())


def jobs(jack):
    return jobs_pb2_grpc.BackgroundJobsStub(jack.channel())


def create_producer(jack, name):
    return admin(jack).CreateProducer(
        admin_pb2.CreateProducerRequest(name=name), timeout=15
    ).producer


def create_job_type(jack, producer_id, name, queue=job_pb2.QUEUE_MEDIUM):
    return admin(jack).CreateJobType(
        admin_pb2.CreateJobTypeRequest(producer_id=producer_id, name=name, queue=queue),
        timeout=15,
    ).job_type


def enqueue(jack, producer_id, job_type):
    return jobs(jack).Enqueue(
        jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type=job_type, payload=b"{}"),
        timeout=15,
    ).job_id


def producer_names(jack):
    response = admin(jack).ListProducers(
        admin_pb2.ListProducersRequest(page_size=1000), timeout=15
    )
    return sorted(p.name for p in response.producers)


def try_create(jack, name):
    """The status code CreateProducer answers: OK, or the error's code."""
    try:
        create_producer(jack, name)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


class RestartTests(TestCase):
    def test_survives_restart(self):
        """
        A producer and job type created through one Jack are there after it
        stops and starts again on the same bucket: enqueueing with them
        works, and they read back unchanged.
        """
        gcs = shared_gcs(self)
        bucket = gcs.new_bucket()
        first = gcs_jack(self, gcs, bucket)
        first.start()
        producer = create_producer(first, "Billing/EU")
        job_type = create_job_type(first, producer.producer_id, "send-invoice",
                                   job_pb2.QUEUE_HIGH)
        self.assertEqual(first.stop(), -signal.SIGTERM)
        self.assertIn("Jack drained and stopped", first.log())

        again = gcs_jack(self, gcs, bucket)
        again.start()
        self.assertTrue(enqueue(again, producer.producer_id, "send-invoice").startswith("job_"))
        fetched = admin(again).GetProducer(
            admin_pb2.GetProducerRequest(producer_id=producer.producer_id), timeout=15
        ).producer
        self.assertEqual(fetched, producer)
        listed = admin(again).ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer.producer_id), timeout=15
        ).job_types
        self.assertEqual(list(listed), [job_type])
        self.assertEqual(health_status(again.channel(), "jack.AdminService"), SERVING)
        log = again.log()
        self.assertIn(f"config storage GCS gs://{bucket}/jack/", log)
        self.assertIn(f"1 producer(s) and 1 job type(s) loaded from gs://{bucket}/jack/", log)
        self.assertNotIn("Traceback", log)


class ReplicaTests(TestCase):
    def test_two_replicas(self):
        """
        Two Jacks on one bucket: what one creates, the other can enqueue
        with at once; the same name created on both at once succeeds on
        exactly one; 20 names created at once across both all survive, and
        both list them after a refresh.
        """
        gcs = shared_gcs(self)
        bucket = gcs.new_bucket()
        a = gcs_jack(self, gcs, bucket, "--gcs-refresh-interval", "500ms")
        b = gcs_jack(self, gcs, bucket, "--gcs-refresh-interval", "500ms")
        a.start()
        b.start()

        producer = create_producer(a, "Billing")
        create_job_type(a, producer.producer_id, "send")
        self.assertTrue(enqueue(b, producer.producer_id, "send").startswith("job_"))
        create_job_type(b, producer.producer_id, "refund")
        self.assertTrue(enqueue(a, producer.producer_id, "refund").startswith("job_"))

        with ThreadPoolExecutor(20) as pool:
            for n in range(5):
                name = f"contested-{n}"
                codes = sorted(pool.map(try_create, [a, b], [name, name]),
                               key=lambda code: code.value[0])
                self.assertEqual(codes, [grpc.StatusCode.OK, grpc.StatusCode.ALREADY_EXISTS])
            names = [f"service-{n:02d}" for n in range(20)]
            codes = list(pool.map(try_create, [(a, b)[n % 2] for n in range(20)], names))
        self.assertEqual(codes, [grpc.StatusCode.OK] * 20)
        expected = sorted(["Billing", *names, *(f"contested-{n}" for n in range(5))])
        wait_until(lambda: producer_names(a) == expected, timeout=30)
        wait_until(lambda: producer_names(b) == expected, timeout=30)


class OutageTests(TestCase):
    def test_gcs_goes_away_and_comes_back(self):
        """
        With GCS stopped, Jack keeps enqueueing with what it holds (health
        of "" and jack.BackgroundJobs stays SERVING), admin writes answer
        UNAVAILABLE and jack.AdminService turns NOT_SERVING; with GCS back
        on the same port, all of it recovers by itself.
        """
        gcs = own_gcs(self)
        bucket = gcs.new_bucket()
        jack = gcs_jack(self, gcs, bucket, "--gcs-timeout", "1s", "--health-interval", "200ms")
        jack.start()
        producer = create_producer(jack, "Billing")
        create_job_type(jack, producer.producer_id, "send")
        channel = jack.channel()

        gcs.stop()
        for _ in range(5):
            self.assertTrue(enqueue(jack, producer.producer_id, "send").startswith("job_"))
        with self.assertRaises(grpc.RpcError) as caught:
            create_producer(jack, "Mail")
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("config storage (GCS) unavailable", caught.exception.details())
        wait_until(lambda: health_status(channel, "jack.AdminService") == NOT_SERVING)
        self.assertEqual(health_status(channel, ""), SERVING)
        self.assertEqual(health_status(channel, "jack.BackgroundJobs"), SERVING)
        self.assertTrue(enqueue(jack, producer.producer_id, "send").startswith("job_"))

        gcs.start()
        wait_until(lambda: health_status(channel, "jack.AdminService") == SERVING)
        mail = create_producer(jack, "Mail")
        create_job_type(jack, mail.producer_id, "deliver")
        self.assertTrue(enqueue(jack, mail.producer_id, "deliver").startswith("job_"))
        self.assertEqual(producer_names(jack), ["Billing", "Mail"])
        log = jack.log()
        self.assertIn("GCS unreachable", log)
        self.assertIn("GCS is reachable again", log)
        self.assertNotIn("Traceback", log)


class StartErrorTests(TestCase):
    def assertCannotStart(self, args, env, message):
        result = run_twistd(["jack", "--grpc-port", str(free_port()), *args], env=env)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        [line] = [line for line in output.splitlines() if "Jack cannot start" in line]
        self.assertIn(f"Jack cannot start: {message}", line)
        self.assertNotIn("Traceback", output)
        return line

    def test_no_such_bucket(self):
        """A bucket that does not exist stops the start with one line naming it."""
        gcs = shared_gcs(self)
        self.assertCannotStart(
            ["--gcs-bucket", "no-such-bucket"], gcs.env(),
            f"GCS: bucket 'no-such-bucket' does not exist at {gcs.url}",
        )

    def test_unreachable(self):
        """
        A GCS nothing answers for stops the start within about GCS_TIMEOUT,
        with one line saying where and why.
        """
        shared_gcs(self)
        url = f"http://127.0.0.1:{free_port()}"
        line = self.assertCannotStart(
            ["--gcs-bucket", "jack-config", "--gcs-timeout", "1s"],
            {"STORAGE_EMULATOR_HOST": url},
            f"GCS: no answer from {url} within 1s (",
        )
        self.assertIn("Connection refused", line)

    def test_no_credentials(self):
        """
        Real GCS without usable Google credentials: one clear line.
        """
        shared_gcs(self)
        self.assertCannotStart(
            ["--gcs-bucket", "jack-config"],
            {"STORAGE_EMULATOR_HOST": "",
             "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"},
            "GCS: no usable Google credentials: File /nonexistent/key.json was not found.",
        )

    def test_bad_bucket_name(self):
        """
        A GCS_BUCKET no bucket can be named (a trailing dot, capitals and
        spaces) is refused before anything starts, with one line saying
        why.
        """
        for bucket, problem in [
            ("jack-config.", "it must start and end with a letter or digit"),
            ("Bad Bucket!", "only lowercase letters, digits, '-', '_' and '.' are allowed"),
        ]:
            result = run_twistd(["jack", "--grpc-port", "0", "--gcs-bucket", bucket])
            self.assertEqual(result.returncode, 1)
            self.assertEqual(
                result.stderr.strip(),
                f"twistd jack: GCS_BUCKET {bucket!r} is not a bucket name: {problem}",
            )

    def test_emulator_host_without_scheme(self):
        """
        STORAGE_EMULATOR_HOST without its scheme is refused with one line
        saying what to write instead.
        """
        result = run_twistd(
            ["jack", "--grpc-port", "0", "--gcs-bucket", "jack-config"],
            env={"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"},
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.strip(),
            "twistd jack: STORAGE_EMULATOR_HOST='127.0.0.1:4443' lacks the scheme the "
            "client library needs: use http://127.0.0.1:4443",
        )

    def test_prefix_too_long(self):
        """A GCS_PREFIX too long for Jack's keys is refused before anything starts."""
        result = run_twistd(
            ["jack", "--grpc-port", "0", "--gcs-bucket", "b", "--gcs-prefix", "p" * 250]
        )
        self.assertEqual(result.returncode, 1)
        self.assertEqual(
            result.stderr.strip(),
            "twistd jack: GCS_PREFIX is 251 bytes long; at most 200 are allowed",
        )
