"""
End to end with the Pub/Sub backend: ``twistd jack`` as a subprocess,
publishing to Google's Pub/Sub emulator; jobs are pulled back from
subscriptions the way a consumer would.
"""

import json
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2
from twisted.trial.unittest import TestCase

from jack import admin_pb2, admin_pb2_grpc, job_pb2, jobs_pb2, jobs_pb2_grpc
from jackd.test.test_e2e import health_status, wait_until
from jackd.testing.daemon import JackProcess, free_port, run_twistd, twistd_environment
from jackd.testing.pubsub import PubSubEmulator, shared_emulator, unique

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

QUEUE_NAMES = ("immediate", "high", "medium", "low")
QUEUE_VALUES = {
    "immediate": job_pb2.QUEUE_IMMEDIATE,
    "high": job_pb2.QUEUE_HIGH,
    "medium": job_pb2.QUEUE_MEDIUM,
    "low": job_pb2.QUEUE_LOW,
}


def topic_options(topics):
    """The --pubsub-topic-* options for C{topics} (queue name -> topic)."""
    return [arg for queue, topic in topics.items()
            for arg in (f"--pubsub-topic-{queue}", topic)]


class PubSubJack:
    """
    A test's own topics (one per queue, each with a subscription) on an
    emulator, and a Jack publishing to them.
    """

    def __init__(self, testCase, emulator, args=(), create=True):
        self.emulator = emulator
        prefix = unique("e2e")
        self.topics = {queue: f"{prefix}-{queue}" for queue in QUEUE_NAMES}
        self.subscriptions = {queue: f"{topic}-sub" for queue, topic in self.topics.items()}
        if create:
            self.subscribe()
        self.jack = JackProcess(
            args=["--queue-backend", "pubsub", "--pubsub-project", emulator.project,
                  *topic_options(self.topics), *args],
            env=emulator.env(),
        )
        testCase.addCleanup(self.jack.stop)

    def subscribe(self):
        for queue, topic in self.topics.items():
            self.emulator.create_subscription(topic, self.subscriptions[queue])

    def register(self):
        """A producer with one job type per queue (named after the queue)."""
        admin = admin_pb2_grpc.AdminServiceStub(self.jack.channel())
        producer = admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name=unique("Billing")), timeout=10
        ).producer
        for queue in QUEUE_NAMES:
            admin.CreateJobType(
                admin_pb2.CreateJobTypeRequest(
                    producer_id=producer.producer_id, name=f"{queue}-job",
                    queue=QUEUE_VALUES[queue], max_retries=7,
                ),
                timeout=10,
            )
        return producer.producer_id

    def jobs(self):
        return jobs_pb2_grpc.BackgroundJobsStub(self.jack.channel())

    def pull(self, queue, count, timeout=30):
        """The messages on C{queue}'s subscription: C{[(pulled_at, message)]}."""
        return self.emulator.pull(self.subscriptions[queue], count, timeout)


class DeliveryTests(TestCase):
    def test_every_job_reaches_its_topic(self):
        """
        Jobs enqueued through gRPC, one by one and in bulk, on all four
        queues, are pulled back from the topic of their queue, each exactly
        once, with the ``jack.Job`` envelope as body and the documented
        attributes; a bulk's refused item publishes nothing.
        """
        setup = PubSubJack(self, shared_emulator(self))
        setup.jack.start()
        producer_id = setup.register()
        jobs = setup.jobs()

        sent = {}  # job_id -> (queue, payload, trace_id)
        for queue in QUEUE_NAMES:
            payload = f"single {queue}".encode()
            response = jobs.Enqueue(
                jobs_pb2.EnqueueRequest(
                    producer_id=producer_id, job_type=f"{queue}-job",
                    payload=payload, trace_id=f"trace-{queue}",
                ),
                timeout=10,
            )
            sent[response.job_id] = (queue, payload, f"trace-{queue}")
        bulk = [
            jobs_pb2.EnqueueRequest(
                producer_id=producer_id, job_type=f"{queue}-job",
                payload=f"bulk {queue} {n}".encode(),
            )
            for n in range(2)
            for queue in QUEUE_NAMES
        ]
        bulk.insert(3, jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="nope"))
        response = jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=bulk), timeout=10)
        self.assertEqual(
            [result.code for result in response.results],
            [grpc.StatusCode.NOT_FOUND.value[0] if n == 3 else 0 for n in range(9)],
        )
        for request, result in zip(bulk, response.results):
            if result.job_id:
                sent[result.job_id] = (request.job_type[:-4], request.payload, "")

        received = {}
        for queue in QUEUE_NAMES:
            expected = sum(1 for q, _, _ in sent.values() if q == queue)
            messages = setup.pull(queue, expected)
            self.assertEqual(len(messages), expected, f"queue {queue}")
            for _, message in messages:
                job = job_pb2.Job.FromString(message.message.data)
                self.assertNotIn(job.job_id, received, "delivered twice")
                received[job.job_id] = (queue, job, dict(message.message.attributes))

        self.assertEqual(set(received), set(sent))
        for job_id, (queue, job, attributes) in received.items():
            sent_queue, payload, trace_id = sent[job_id]
            self.assertEqual(queue, sent_queue)
            self.assertEqual(job.producer_id, producer_id)
            self.assertEqual(job.job_type, f"{queue}-job")
            self.assertEqual(job.queue, QUEUE_VALUES[queue])
            self.assertEqual(job.payload, payload)
            self.assertEqual(job.trace_id, trace_id)
            self.assertEqual(job.max_retries, 7)
            expected = {
                "job_id": job_id,
                "producer_id": producer_id,
                "job_type": f"{queue}-job",
                "queue": queue,
                "enqueued_at": job.enqueued_at.ToJsonString(),
                "run_at": job.run_at.ToJsonString(),
                "max_retries": "7",
            }
            if trace_id:
                expected["trace_id"] = trace_id
            self.assertEqual(attributes, expected)
            self.assertTrue(attributes["enqueued_at"].endswith("Z"))

    def test_jackctl_pull(self):
        """
        ``jackctl pull`` prints the attributes and decoded envelope of what
        a subscription holds, and without --ack leaves it for consumers.
        """
        emulator = shared_emulator(self)
        setup = PubSubJack(self, emulator)
        setup.jack.start()
        producer_id = setup.register()
        job_id = setup.jobs().Enqueue(
            jobs_pb2.EnqueueRequest(
                producer_id=producer_id, job_type="high-job", payload=b"\x00\xff"
            ),
            timeout=10,
        ).job_id
        pulled = subprocess.run(
            [sys.executable, "-m", "jackd.ctl", "pull", setup.subscriptions["high"],
             "--project", emulator.project, "--wait", "10"],
            env=twistd_environment(emulator.env()),
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(pulled.returncode, 0, pulled.stderr)
        [message] = json.loads(pulled.stdout)["messages"]
        self.assertEqual(message["attributes"]["job_id"], job_id)
        self.assertEqual(message["attributes"]["queue"], "high")
        self.assertEqual(message["job"]["jobId"], job_id)
        self.assertEqual(message["job"]["payload"], "AP8=")
        self.assertEqual(message["job"]["queue"], "QUEUE_HIGH")
        # Not acknowledged: a consumer still gets it.
        [(_, again)] = setup.pull("high", 1)
        self.assertEqual(again.message.attributes["job_id"], job_id)

        missing = subprocess.run(
            [sys.executable, "-m", "jackd.ctl", "pull", "no-such-subscription",
             "--project", emulator.project],
            env=twistd_environment(emulator.env()),
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(missing.returncode, 1)
        self.assertIn("jackctl: Pub/Sub: NOT_FOUND", missing.stderr)

        started = time.monotonic()
        unreachable = subprocess.run(
            [sys.executable, "-m", "jackd.ctl", "--timeout", "2", "pull", "sub",
             "--project", emulator.project],
            env=twistd_environment({"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{free_port()}"}),
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(unreachable.returncode, 1)
        self.assertIn("jackctl: Pub/Sub: ", unreachable.stderr)
        self.assertNotIn("Traceback", unreachable.stderr)
        self.assertLess(time.monotonic() - started, 20)


class OutageTests(TestCase):
    def test_emulator_stops_and_comes_back(self):
        """
        Pub/Sub stopping mid-run: Enqueue answers UNAVAILABLE within the
        publish timeout, health of "" and jack.BackgroundJobs goes
        NOT_SERVING (AdminService, on memory storage, stays SERVING); when
        Pub/Sub is back (empty: Jack makes the topics again), health returns
        to SERVING and jobs flow, with no restart of Jack.
        """
        shared_emulator(self)  # skips without gcloud
        emulator = PubSubEmulator()
        emulator.start()
        self.addCleanup(emulator.stop)
        setup = PubSubJack(
            self, emulator,
            args=["--pubsub-create-topics", "true", "--pubsub-publish-timeout", "2s",
                  "--health-interval", "500ms"],
            create=False,
        )
        setup.jack.start()
        producer_id = setup.register()
        jobs = setup.jobs()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="low-job")
        jobs.Enqueue(request, timeout=10)

        emulator.stop()
        started = time.monotonic()
        with self.assertRaises(grpc.RpcError) as caught:
            jobs.Enqueue(request, timeout=30)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertIn("may still be delivered", caught.exception.details())
        self.assertLess(time.monotonic() - started, 2 + 3)
        channel = setup.jack.channel()
        for service in ("", "jack.BackgroundJobs"):
            wait_until(lambda s=service: health_status(channel, s) == NOT_SERVING)
        self.assertEqual(health_status(channel, "jack.AdminService"), SERVING)

        emulator.start()
        for service in ("", "jack.BackgroundJobs"):
            wait_until(lambda s=service: health_status(channel, s) == SERVING, timeout=30)
        setup.subscribe()
        job_id = jobs.Enqueue(request, timeout=10).job_id
        [(_, message)] = setup.pull("low", 1)
        self.assertEqual(message.message.attributes["job_id"], job_id)
        self.assertIn("Pub/Sub cannot take jobs", setup.jack.log())
        self.assertIn("Pub/Sub takes jobs again", setup.jack.log())


class ShutdownTests(TestCase):
    def enqueue_many(self, setup, count):
        producer_id = setup.register()
        jobs = setup.jobs()
        return [
            jobs.Enqueue.future(
                jobs_pb2.EnqueueRequest(
                    producer_id=producer_id, job_type=f"{QUEUE_NAMES[n % 4]}-job",
                    payload=b"%d" % n,
                ),
                timeout=60,
            )
            for n in range(count)
        ]

    def delivered(self, setup, count):
        """The payloads on all four subscriptions (each message once)."""
        payloads = []
        for queue in QUEUE_NAMES:
            for _, message in setup.pull(queue, count // 4):
                payloads.append(job_pb2.Job.FromString(message.message.data).payload)
        return payloads

    def test_sigterm_under_load_loses_nothing(self):
        """
        SIGTERM while enqueues wait on a slow batch (3 s batch latency):
        the calls in flight complete with OK, Jack flushes the publisher
        and exits, and every job that got OK is in its topic.
        """
        setup = PubSubJack(
            self, shared_emulator(self),
            args=["--pubsub-batch-latency", "3s", "--pubsub-publish-timeout", "10s"],
        )
        setup.jack.start()
        calls = self.enqueue_many(setup, 200)
        time.sleep(1.5)  # the calls reach Jack and wait for their batch
        self.assertEqual([call for call in calls if call.done()], [],
                         "calls finished before SIGTERM: nothing was in flight")
        setup.jack.signal(signal.SIGTERM)
        ok = {call.result().job_id: call for call in calls}  # raises if one failed
        self.assertEqual(setup.jack.wait(30), -signal.SIGTERM)
        self.assertIn("Pub/Sub publisher flushed", setup.jack.log())
        delivered = self.delivered(setup, 200)
        self.assertEqual(len(ok), 200)
        self.assertEqual(sorted(delivered), sorted(b"%d" % n for n in range(200)))

    def test_stop_flushes_what_is_batched(self):
        """
        When the shutdown grace ends before the batch is sent (grace 0.5 s,
        batch latency 4 s), the calls are cut off, but stopping the backend
        still sends the batch: every job Jack had taken is delivered, none
        is dropped from the client's buffer.
        """
        setup = PubSubJack(
            self, shared_emulator(self),
            args=["--pubsub-batch-latency", "4s", "--pubsub-publish-timeout", "10s",
                  "--shutdown-grace", "500ms"],
        )
        setup.jack.start()
        calls = self.enqueue_many(setup, 40)
        time.sleep(1.5)
        self.assertEqual([call for call in calls if call.done()], [])
        setup.jack.signal(signal.SIGTERM)
        self.assertEqual(setup.jack.wait(30), -signal.SIGTERM)
        log = setup.jack.log()
        self.assertIn("Flushing the Pub/Sub publisher: 40 job(s) in flight", log)
        self.assertIn("Pub/Sub publisher flushed", log)
        self.assertEqual(
            sorted(self.delivered(setup, 40)), sorted(b"%d" % n for n in range(40))
        )


class StartErrorTests(TestCase):
    def test_missing_topic(self):
        """
        A topic that does not exist (and no --pubsub-create-topics) stops
        the start: one line naming the topic, exit status 1, no traceback.
        """
        emulator = shared_emulator(self)
        topic = unique("absent")
        result = run_twistd(
            ["jack", "--grpc-port", str(free_port()), "--queue-backend", "pubsub",
             "--pubsub-project", emulator.project, "--pubsub-topic-immediate", topic],
            env=emulator.env(),
        )
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        output = result.stdout + result.stderr
        self.assertIn(
            f"Jack cannot start: Pub/Sub: topic projects/{emulator.project}/topics/"
            f"{topic} (queue immediate) does not exist: create it, or start Jack "
            "with --pubsub-create-topics true (PUBSUB_CREATE_TOPICS=true)",
            output,
        )
        self.assertNotIn("Traceback", output)

    def test_no_credentials(self):
        """
        Real Pub/Sub without usable Google credentials: one clear line,
        exit status 1.
        """
        shared_emulator(self)
        result = run_twistd(
            ["jack", "--grpc-port", str(free_port()), "--queue-backend", "pubsub",
             "--pubsub-project", "some-project"],
            env={"PUBSUB_EMULATOR_HOST": "",
                 "GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent/key.json"},
        )
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 1, output)
        self.assertIn("Jack cannot start: Pub/Sub: no Google credentials", output)
        self.assertNotIn("Traceback", output)
