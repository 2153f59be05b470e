"""
Tests for L{jackd.backends.pubsub} against Google's Pub/Sub emulator,
through the official client library (started once per test run).
"""

import threading

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial import unittest

from jack.job_pb2 import Job, Queue
from jackd.backends.pubsub import (
    DEFAULT_TOPICS,
    MAX_PUBLISH_REQUEST_BYTES,
    MAX_PUBLISH_REQUEST_MESSAGES,
    PubSubBackend,
    _json_time,
    attributes_of,
    check_message,
    request_size,
)
from jackd.errors import ConfigError, InvalidArgument, ResourceExhausted, Unavailable
from jackd.test.backend_mixin import QUEUES, QueueBackendTestsMixin, make_job
from jackd.testing.pubsub import PubSubEmulator, shared_emulator, unique
from jackd.testing.pubsub_fake import FakePubSub
from jackd.testing.services import set_environ


def _point_client_at(testCase, server):
    """Point Pub/Sub clients made during this test at C{server} (its C{host})."""
    set_environ(testCase, "PUBSUB_EMULATOR_HOST", server.host)


def _topics(prefix):
    """Topic names of this test's own, one per queue."""
    name = unique(prefix)
    return {queue: f"{name}-{DEFAULT_TOPICS[queue]}" for queue in QUEUES}


class PubSubBackendTests(QueueBackendTestsMixin, unittest.TestCase):
    """
    L{PubSubBackend} passes the ``IQueueBackend`` conformance suite.
    """

    def make_backend(self):
        emulator = shared_emulator(self)
        _point_client_at(self, emulator)
        return PubSubBackend(
            emulator.project, reactor, topics=_topics("conf"), create_topics=True
        )


class PubSubDeliveryTests(unittest.TestCase):
    """
    What reaches the topics: body, attributes, topic per queue; and the
    limits, timeouts and bounds of the backend.
    """

    def setUp(self):
        self.emulator = shared_emulator(self)
        _point_client_at(self, self.emulator)
        self.topics = _topics("delivery")

    @inlineCallbacks
    def started(self, **kwargs):
        kwargs.setdefault("topics", self.topics)
        kwargs.setdefault("create_topics", True)
        backend = PubSubBackend(self.emulator.project, reactor, **kwargs)
        yield backend.startService()
        self.addCleanup(lambda: backend.running and backend.stopService())
        return backend

    def subscribe(self, queue):
        """A subscription of its own on C{queue}'s topic."""
        subscription = unique("sub")
        self.emulator.create_subscription(self.topics[queue], subscription)
        return subscription

    @inlineCallbacks
    def test_body_and_attributes(self):
        """
        Each job goes to its queue's topic with the ``jack.Job`` envelope
        as body and the routing fields as attributes (RFC 3339 times with
        ``Z``; ``trace_id`` only when set).
        """
        backend = yield self.started()
        subscriptions = {queue: self.subscribe(queue) for queue in QUEUES}
        jobs = [make_job(n, queue=queue) for n, queue in enumerate(QUEUES)]
        untraced = make_job(9, queue=Queue.QUEUE_LOW)
        untraced.trace_id = ""
        outcomes = yield backend.publish([*jobs, untraced])
        self.assertEqual(outcomes, [None] * 5)
        for queue, subscription in subscriptions.items():
            expected = [job for job in [*jobs, untraced] if job.queue == queue]
            received = yield deferToThread(self.emulator.pull, subscription, len(expected))
            self.assertEqual(len(received), len(expected))
            for (_, message), job in zip(
                sorted(received, key=lambda r: r[1].message.attributes["job_id"]), expected
            ):
                self.assertEqual(Job.FromString(message.message.data), job)
                self.assertEqual(dict(message.message.attributes), attributes_of(job))
        self.assertEqual(
            attributes_of(jobs[1]),
            {
                "job_id": "job_00000000000000000000000001",
                "producer_id": "prod_test",
                "job_type": "send",
                "queue": "high",
                "enqueued_at": "2023-11-14T22:13:20.000000001Z",
                "run_at": "2023-11-14T22:13:20.000000001Z",
                "max_retries": "3",
                "trace_id": "trace-1",
            },
        )
        self.assertNotIn("trace_id", attributes_of(untraced))

    @inlineCallbacks
    def test_outcomes_on_reactor_thread(self):
        """
        The client completes its futures on threads of its own; the
        backend's Deferreds fire on the reactor's thread.
        """
        backend = yield self.started()
        threads = []
        d = backend.publish([make_job(1)])
        d.addCallback(lambda outcomes: threads.append(threading.current_thread()))
        yield d
        self.assertEqual(threads, [threading.main_thread()])

    @inlineCallbacks
    def test_limits_refused_before_publishing(self):
        """
        A job Pub/Sub would refuse (over 10,000,000 bytes with its
        attributes, or an attribute value over 1024 bytes) is refused by
        C{validate} and by C{publish} with ``InvalidArgument`` naming the
        field, and nothing of it reaches the topic; its neighbours do.
        """
        backend = yield self.started()
        subscription = self.subscribe(Queue.QUEUE_MEDIUM)
        huge = make_job(1)
        huge.payload = b"x" * MAX_PUBLISH_REQUEST_BYTES
        traced = make_job(2)
        traced.trace_id = "t" * 1025
        fine = make_job(3)
        for job, field in ((huge, "payload"), (traced, "trace_id")):
            error = self.assertRaises(InvalidArgument, backend.validate, job)
            self.assertEqual(error.field, field)
        backend.validate(fine)
        outcomes = yield backend.publish([huge, traced, fine])
        self.assertIsInstance(outcomes[0], InvalidArgument)
        self.assertIsInstance(outcomes[1], InvalidArgument)
        self.assertIsNone(outcomes[2])
        received = yield deferToThread(self.emulator.pull, subscription, 1)
        self.assertEqual(
            [Job.FromString(m.message.data).job_id for _, m in received], [fine.job_id]
        )

    @inlineCallbacks
    def test_bounded_outstanding(self):
        """
        Past C{max_outstanding} jobs waiting for Pub/Sub, more are refused
        with ``ResourceExhausted`` at once; those within the bound are
        published, and the bound frees up after.
        """
        backend = yield self.started(max_outstanding=2, batch_latency=1.0)
        first = backend.publish([make_job(1), make_job(2), make_job(3)])
        self.assertTrue(first.called is False)
        outcomes = yield first
        self.assertEqual(outcomes[:2], [None, None])
        self.assertIsInstance(outcomes[2], ResourceExhausted)
        self.assertEqual((yield backend.publish([make_job(4)])), [None])

    @inlineCallbacks
    def test_bounded_outstanding_bytes(self):
        """
        The bound counts message bytes too; a job larger than the whole
        bound still goes when nothing else is waiting (or it could never
        go at all).
        """
        backend = yield self.started(max_outstanding_bytes=200, batch_latency=0.5)
        outcomes = yield backend.publish([make_job(1), make_job(2), make_job(3)])
        self.assertEqual(outcomes[0], None)
        self.assertIsInstance(outcomes[-1], ResourceExhausted)
        big = make_job(4)
        big.payload = b"x" * 1000
        self.assertEqual((yield backend.publish([big, make_job(5)]))[0], None)

    @inlineCallbacks
    def test_missing_topic_stops_start(self):
        """
        Without C{create_topics}, a missing topic fails the start with a
        ``ConfigError`` naming it and the option that would create it.
        """
        backend = PubSubBackend(self.emulator.project, reactor, topics=self.topics)
        error = yield self.assertFailure(backend.startService(), ConfigError)
        self.assertIn(f"topics/{self.topics[Queue.QUEUE_IMMEDIATE]}", str(error))
        self.assertIn("does not exist", str(error))
        self.assertIn("--pubsub-create-topics", str(error))
        yield backend.stopService()

    @inlineCallbacks
    def test_existing_topics_start(self):
        """Topics that exist are used as they are."""
        yield deferToThread(self.emulator.create_topics, self.topics.values())
        backend = yield self.started(create_topics=False)
        self.assertEqual((yield backend.publish([make_job(1)])), [None])

    @inlineCallbacks
    def test_check_recreates_topic(self):
        """
        With C{create_topics}, a health check that finds a topic gone
        creates it again and reports healthy; without, it reports
        unhealthy.
        """
        backend = yield self.started()
        path = backend.topics[Queue.QUEUE_LOW]
        publisher = self.emulator.publisher()
        yield deferToThread(publisher.delete_topic, request={"topic": path})
        self.assertIs((yield backend.check()), True)
        yield deferToThread(publisher.get_topic, request={"topic": path})

        strict = yield self.started(topics=_topics("strict"))
        yield deferToThread(
            publisher.delete_topic, request={"topic": strict.topics[Queue.QUEUE_LOW]}
        )
        strict._create_topics = False
        self.assertIs((yield strict.check()), False)

    @inlineCallbacks
    def test_stop_refuses_later_publishes(self):
        """After stop, a publish is refused with ``Unavailable``, not lost."""
        backend = yield self.started()
        yield backend.stopService()
        [outcome] = yield backend.publish([make_job(1)])
        self.assertIsInstance(outcome, Unavailable)


class UnreachableTests(unittest.TestCase):
    """
    Pub/Sub that does not answer: calls end within the publish timeout.
    """

    def setUp(self):
        shared_emulator(self)  # skips without gcloud, like the others
        from jackd.testing.daemon import free_port

        self.host = f"127.0.0.1:{free_port()}"  # nothing listens there
        set_environ(self, "PUBSUB_EMULATOR_HOST", self.host)

    @inlineCallbacks
    def test_start_fails_clearly(self):
        """Unreachable at start: a ``ConfigError`` saying it cannot reach it."""
        backend = PubSubBackend("jack-test", reactor, create_topics=True)
        error = yield self.assertFailure(backend.startService(), ConfigError)
        self.assertIn("cannot reach", str(error))
        self.assertNotIn("\n", str(error))
        yield backend.stopService()



class OutageTests(unittest.TestCase):
    """
    Pub/Sub going away while Jack runs, on an emulator of this test's own:
    calls end within the publish timeout with ``Unavailable``, health goes
    false, and both recover by themselves when Pub/Sub is back.
    """

    @inlineCallbacks
    def test_outage_and_recovery(self):
        shared_emulator(self)  # skips without gcloud, like the others
        emulator = PubSubEmulator()
        yield deferToThread(emulator.start)
        self.addCleanup(deferToThread, emulator.stop)
        _point_client_at(self, emulator)
        backend = PubSubBackend(
            emulator.project, reactor, topics=_topics("outage"), create_topics=True,
            publish_timeout=2.0,
        )
        yield backend.startService()
        self.addCleanup(lambda: backend.running and backend.stopService())
        self.assertEqual((yield backend.publish([make_job(1)])), [None])

        yield deferToThread(emulator.stop)
        started = reactor.seconds()
        [outcome] = yield backend.publish([make_job(2)])
        self.assertIsInstance(outcome, Unavailable)
        self.assertIn("may still be delivered", str(outcome))
        self.assertLess(reactor.seconds() - started, 2.0 + 3.0)
        self.assertIs((yield backend.check()), False)

        # The emulator comes back empty: the check makes the topics again.
        yield deferToThread(emulator.start)
        # The client reconnects within a few seconds (not at once): poll.
        deadline = reactor.seconds() + 15
        while not (yield backend.check()):
            self.assertLess(reactor.seconds(), deadline, "no recovery in 15 s")
            yield deferLater(reactor, 0.2, lambda: None)
        subscription = unique("back")
        yield deferToThread(
            emulator.create_subscription,
            backend.topics[Queue.QUEUE_MEDIUM].rsplit("/", 1)[1],
            subscription,
        )
        self.assertEqual((yield backend.publish([make_job(3)])), [None])
        received = yield deferToThread(emulator.pull, subscription, 1)
        self.assertEqual(
            [Job.FromString(m.message.data).job_id for _, m in received],
            [make_job(3).job_id],
        )


class HungPublishTests(unittest.TestCase):
    """
    A Pub/Sub whose topics answer but whose publishes hang (a fake that
    speaks the Publisher protocol: the emulator cannot be made to do this).
    """

    @inlineCallbacks
    def setUp(self):
        self.fake = FakePubSub()
        self.fake.start()
        self.addCleanup(self.fake.stop)
        _point_client_at(self, self.fake)
        self.backend = PubSubBackend("proj", reactor, publish_timeout=1.0)
        yield self.backend.startService()
        self.addCleanup(lambda: self.backend.running and self.backend.stopService())
        self.high = self.backend.topics[Queue.QUEUE_HIGH]

    @inlineCallbacks
    def test_health_follows_publishes(self):
        """
        Publishes that time out turn health false although the topics
        answer; the next confirmed publish turns it true again.
        """
        self.assertIs((yield self.backend.check()), True)
        self.fake.hang.add(self.high)
        [outcome] = yield self.backend.publish([make_job(1, queue=Queue.QUEUE_HIGH)])
        self.assertIsInstance(outcome, Unavailable)
        self.assertIs((yield self.backend.check()), False)
        self.fake.hang.clear()
        self.assertEqual((yield self.backend.publish([make_job(2)])), [None])
        self.assertIs((yield self.backend.check()), True)

    @inlineCallbacks
    def test_some_confirmed_some_timed_out(self):
        """
        In one call, the jobs Pub/Sub confirms answer C{None} and only those
        it does not confirm in time answer ``Unavailable``, after the
        timeout.
        """
        self.fake.hang.add(self.high)
        started = reactor.seconds()
        outcomes = yield self.backend.publish(
            [make_job(1, queue=Queue.QUEUE_LOW), make_job(2, queue=Queue.QUEUE_HIGH),
             make_job(3, queue=Queue.QUEUE_IMMEDIATE)]
        )
        self.assertEqual(outcomes[0], None)
        self.assertIsInstance(outcomes[1], Unavailable)
        self.assertEqual(outcomes[2], None)
        self.assertGreaterEqual(reactor.seconds() - started, 0.9)
        self.assertEqual(
            sorted(topic for topic, _ in self.fake.published),
            [self.backend.topics[Queue.QUEUE_IMMEDIATE], self.backend.topics[Queue.QUEUE_LOW]],
        )

    def test_batch_latency_bounded(self):
        """A batch latency over half the publish timeout is refused."""
        self.assertRaises(
            ValueError, PubSubBackend, "proj", reactor, publish_timeout=1.0, batch_latency=0.6
        )


class _CountingReactor:
    """The reactor, counting the calls of C{callFromThread}."""

    def __init__(self, reactor):
        self._reactor = reactor
        self.hops = 0

    def callFromThread(self, f, *args, **kwargs):
        self.hops += 1
        return self._reactor.callFromThread(f, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._reactor, name)


class BatchingTests(unittest.TestCase):
    """
    How jobs become ``PublishRequest``s: seen from a fake Pub/Sub that
    records each request it receives.
    """

    def setUp(self):
        self.fake = FakePubSub()
        self.fake.start()
        self.addCleanup(self.fake.stop)
        _point_client_at(self, self.fake)
        self.reactor = _CountingReactor(reactor)

    @inlineCallbacks
    def started(self, **kwargs):
        backend = PubSubBackend("proj", self.reactor, **kwargs)
        yield backend.startService()
        self.addCleanup(lambda: backend.running and backend.stopService())
        return backend

    def requests(self, backend, queue):
        """The message count of each request received for C{queue}."""
        topic = backend.topics[queue]
        return [count for path, count, _ in self.fake.requests if path == topic]

    @inlineCallbacks
    def test_bulk_one_request_per_topic(self):
        """
        The jobs of one C{publish} call go out without waiting for the batch
        latency, in one request per topic, their messages in job order; the
        whole request's answer reaches the reactor in one hop.
        """
        backend = yield self.started(batch_latency=2.0)
        jobs = [
            make_job(n, queue=Queue.QUEUE_HIGH if n % 3 else Queue.QUEUE_LOW)
            for n in range(100)
        ]
        started = reactor.seconds()
        self.reactor.hops = 0
        outcomes = yield backend.publish(jobs)
        self.assertEqual(outcomes, [None] * 100)
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertEqual(self.requests(backend, Queue.QUEUE_HIGH), [66])
        self.assertEqual(self.requests(backend, Queue.QUEUE_LOW), [34])
        self.assertLessEqual(self.reactor.hops, 2)
        for queue in (Queue.QUEUE_HIGH, Queue.QUEUE_LOW):
            self.assertEqual(
                [(m.data, dict(m.attributes)) for topic, m in self.fake.published
                 if topic == backend.topics[queue]],
                [(job.SerializeToString(), attributes_of(job))
                 for job in jobs if job.queue == queue],
            )

    @inlineCallbacks
    def test_calls_of_one_turn_share_request(self):
        """
        The jobs of the calls of several jobs made in one reactor turn (the
        bulks the gRPC edge hands over together) share one request per
        topic, and go without waiting for the batch latency.
        """
        backend = yield self.started(batch_latency=2.0)
        started = reactor.seconds()
        calls = [
            backend.publish([make_job(10 * c + n) for n in range(5)]) for c in range(3)
        ]
        for d in calls:
            self.assertEqual((yield d), [None] * 5)
        self.assertLess(reactor.seconds() - started, 1.0)
        self.assertEqual(self.requests(backend, Queue.QUEUE_MEDIUM), [15])
        self.assertEqual(
            [Job.FromString(m.data).job_id for _, m in self.fake.published],
            [make_job(10 * c + n).job_id for c in range(3) for n in range(5)],
        )

    @inlineCallbacks
    def test_split_at_1000_messages(self):
        """
        More than 1000 jobs for one topic are split into requests of at
        most 1000 messages, Pub/Sub's limit; each job answers for itself.
        """
        backend = yield self.started()
        outcomes = yield backend.publish([make_job(n) for n in range(2500)])
        self.assertEqual(outcomes, [None] * 2500)
        self.assertEqual(MAX_PUBLISH_REQUEST_MESSAGES, 1000)
        self.assertEqual(self.requests(backend, Queue.QUEUE_MEDIUM), [1000, 1000, 500])
        self.assertEqual(len(self.fake.published), 2500)

    @inlineCallbacks
    def test_split_at_request_bytes(self):
        """
        Jobs whose messages together would make a request over 10,000,000
        bytes are split into requests within it: two jobs that make exactly
        10,000,000 bytes share one request; one byte more, and they do not.
        """
        backend = yield self.started(max_outstanding_bytes=100_000_000)
        topic = backend.topics[Queue.QUEUE_MEDIUM]
        overhead = request_size(topic, 0, {})  # a request with an empty message

        def message_bytes(job):
            """What C{job}'s message adds to a request."""
            return request_size(topic, job.ByteSize(), attributes_of(job)) - overhead + 2

        first = make_job(1)
        first.payload = b"x" * 4_000_000
        second = make_job(2)
        second.payload = b""
        left = MAX_PUBLISH_REQUEST_BYTES - (overhead - 2) - message_bytes(first)
        for _ in range(5):
            missing = left - message_bytes(second)
            second.payload = b"y" * (len(second.payload) + missing)
        self.assertEqual(message_bytes(second), left, "no payload fits exactly")

        self.assertEqual((yield backend.publish([first, second])), [None, None])
        [(_, count, size)] = self.fake.requests
        self.assertEqual((count, size), (2, MAX_PUBLISH_REQUEST_BYTES))

        second.payload += b"y"
        self.assertEqual((yield backend.publish([first, second])), [None, None])
        self.assertEqual([count for _, count, _ in self.fake.requests[1:]], [1, 1])
        self.assertTrue(all(size <= MAX_PUBLISH_REQUEST_BYTES
                            for _, _, size in self.fake.requests))

    @inlineCallbacks
    def test_unary_calls_share_request(self):
        """
        Single-job calls within the batch latency share one request per
        topic; each is answered after the latency, with its own outcome.
        """
        backend = yield self.started(batch_latency=0.3)
        started = reactor.seconds()
        calls = [
            backend.publish([make_job(1, queue=Queue.QUEUE_HIGH)]),
            backend.publish([make_job(2, queue=Queue.QUEUE_HIGH)]),
            backend.publish([make_job(3, queue=Queue.QUEUE_LOW)]),
            backend.publish([make_job(4, queue=Queue.QUEUE_HIGH)]),
        ]
        for d in calls:
            self.assertEqual((yield d), [None])
        self.assertGreaterEqual(reactor.seconds() - started, 0.29)
        self.assertEqual(self.requests(backend, Queue.QUEUE_HIGH), [3])
        self.assertEqual(self.requests(backend, Queue.QUEUE_LOW), [1])

    @inlineCallbacks
    def test_failed_request_fails_its_jobs_only(self):
        """
        A request Pub/Sub refuses fails exactly its jobs, each with the
        error's mapping (PERMISSION_DENIED: ``Unavailable``, not stored;
        INVALID_ARGUMENT: ``InvalidArgument``); the jobs of the call's other
        requests are confirmed, and health turns false.
        """
        import grpc

        backend = yield self.started()
        high, low = backend.topics[Queue.QUEUE_HIGH], backend.topics[Queue.QUEUE_LOW]
        self.fake.refuse[high] = (grpc.StatusCode.PERMISSION_DENIED, "no (fake)")
        jobs = [make_job(n, queue=Queue.QUEUE_HIGH if n % 2 else Queue.QUEUE_LOW)
                for n in range(6)]
        outcomes = yield backend.publish(jobs)
        for job, outcome in zip(jobs, outcomes):
            if job.queue == Queue.QUEUE_HIGH:
                self.assertIsInstance(outcome, Unavailable)
                self.assertIn("Pub/Sub refused the job", str(outcome))
                self.assertIn("no (fake)", str(outcome))
            else:
                self.assertIsNone(outcome)
        self.assertEqual({topic for topic, _ in self.fake.published}, {low})
        # Health follows the last outcome (a refusal with no confirmation
        # since: false).  The two requests above end in either order, so
        # their last outcome may be the confirmation: refuse one more.
        [outcome] = yield backend.publish([jobs[1]])
        self.assertIsInstance(outcome, Unavailable)
        self.assertIs((yield backend.check()), False)

        self.fake.refuse[high] = (grpc.StatusCode.INVALID_ARGUMENT, "bad (fake)")
        outcomes = yield backend.publish(jobs[:2])
        self.assertIsNone(outcomes[0])
        self.assertIsInstance(outcomes[1], InvalidArgument)
        self.assertEqual(outcomes[1].field, "job")

    @inlineCallbacks
    def test_retryable_error_retried(self):
        """
        A request answered with a retryable error (UNAVAILABLE) is sent
        again, and its jobs are confirmed once Pub/Sub takes it.
        """
        backend = yield self.started()
        self.fake.flaky[backend.topics[Queue.QUEUE_HIGH]] = 2
        outcomes = yield backend.publish([make_job(1, queue=Queue.QUEUE_HIGH)])
        self.assertEqual(outcomes, [None])
        self.assertEqual(self.requests(backend, Queue.QUEUE_HIGH), [1, 1, 1])
        self.assertEqual(len(self.fake.published), 1)

    @inlineCallbacks
    def test_bulk_keeps_its_own_timeout(self):
        """
        A bulk arriving while a single job's request waits for company does
        not join that request: it would inherit the single job's earlier
        deadline and stop retrying before its own publish timeout.
        """
        backend = yield self.started(batch_latency=0.5, publish_timeout=1.0)
        self.fake.hang.add(backend.topics[Queue.QUEUE_MEDIUM])
        single = backend.publish([make_job(1)])
        yield deferLater(reactor, 0.45, lambda: None)
        started = reactor.seconds()
        outcomes = yield backend.publish([make_job(2), make_job(3)])
        took = reactor.seconds() - started
        self.assertIsInstance((yield single)[0], Unavailable)
        self.assertEqual([type(outcome) for outcome in outcomes], [Unavailable] * 2)
        self.assertGreater(took, 0.9)

    @inlineCallbacks
    def test_stop_sends_what_is_batched(self):
        """
        Stopping sends the requests still waiting for their batch latency
        at once and waits for their outcome before it finishes.
        """
        backend = yield self.started(batch_latency=3.0, publish_timeout=10.0)
        calls = [backend.publish([make_job(n, queue=queue)])
                 for n, queue in enumerate(QUEUES)]
        started = reactor.seconds()
        yield backend.stopService()
        self.assertLess(reactor.seconds() - started, 2.0)
        self.assertEqual([d.called for d in calls], [True] * 4)
        for d in calls:
            self.assertEqual((yield d), [None])
        self.assertEqual(len(self.fake.published), 4)
        self.assertEqual(len(self.fake.requests), 4)


class PublishOnlyAccountTests(unittest.TestCase):
    """
    An account that may publish but not read topic metadata (real Pub/Sub
    answers PERMISSION_DENIED to GetTopic): a warning, not a refusal.
    """

    @inlineCallbacks
    def test_starts_with_warning_and_publishes(self):
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        fake = FakePubSub(readable=False)
        fake.start()
        self.addCleanup(fake.stop)
        _point_client_at(self, fake)
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        backend = PubSubBackend("proj", reactor)
        yield backend.startService()
        self.addCleanup(lambda: backend.running and backend.stopService())
        self.assertIs((yield backend.check()), True)
        warnings = [
            formatEvent(e) for e in observer
            if e["log_level"] == LogLevel.warn and "may not read topic" in formatEvent(e)
        ]
        self.assertEqual(len(warnings), 4)  # one per topic, not again at each check
        self.assertIn("projects/proj/topics/jack-high", " ".join(warnings))
        job = make_job(1, queue=Queue.QUEUE_HIGH)
        self.assertEqual((yield backend.publish([job])), [None])
        [(topic, message)] = fake.published
        self.assertEqual(topic, "projects/proj/topics/jack-high")
        self.assertEqual(Job.FromString(message.data), job)


class CheckMessageTests(unittest.SynchronousTestCase):
    """The limits real Pub/Sub enforces and the emulator does not."""

    TOPIC = "projects/p/topics/t"

    def test_attribute_count(self):
        attributes = {f"k{n}": "v" for n in range(101)}
        error = self.assertRaises(InvalidArgument, check_message, self.TOPIC, 0, attributes)
        self.assertIn("at most 100", str(error))
        check_message(self.TOPIC, 0, dict(list(attributes.items())[:100]))

    def test_attribute_key_size(self):
        error = self.assertRaises(
            InvalidArgument, check_message, self.TOPIC, 0, {"k" * 257: "v"}
        )
        self.assertIn("at most 256 bytes", str(error))
        check_message(self.TOPIC, 0, {"k" * 256: "v"})

    def test_attribute_value_size(self):
        """Bytes count, not characters."""
        error = self.assertRaises(
            InvalidArgument, check_message, self.TOPIC, 0, {"trace_id": "é" * 513}
        )
        self.assertEqual(error.field, "trace_id")
        check_message(self.TOPIC, 0, {"trace_id": "é" * 512})

    def test_request_size(self):
        """The whole publish request, as the client measures it."""
        overhead = 2 + len(self.TOPIC) + 2 + 5  # topic field, message field headers
        check_message(self.TOPIC, MAX_PUBLISH_REQUEST_BYTES - overhead - 64, {})
        self.assertRaises(
            InvalidArgument, check_message, self.TOPIC, MAX_PUBLISH_REQUEST_BYTES, {}
        )

    def test_size_as_protobuf_encodes_it(self):
        """
        The computed request size is the size protobuf encodes, for bodies
        and attributes around the varint length boundaries.
        """
        from google.pubsub_v1.types import PublishRequest, PubsubMessage

        for data_size in (0, 1, 127, 128, 16383, 16384, 2**21 + 5):
            for attributes in ({}, {"job_id": "j" * 26}, {"k" * 127: "é" * 64, "q": ""}):
                message = PubsubMessage.pb()(data=b"x" * data_size, attributes=attributes)
                expected = PublishRequest.pb()(topic=self.TOPIC, messages=[message]).ByteSize()
                self.assertEqual(request_size(self.TOPIC, data_size, attributes), expected)
                self.assertEqual(check_message(self.TOPIC, data_size, attributes), expected)


class JsonTimeTests(unittest.SynchronousTestCase):
    """
    The time attributes are formatted as protobuf's C{ToJsonString} does,
    character for character.
    """

    def test_as_protobuf(self):
        from google.protobuf.timestamp_pb2 import Timestamp

        seconds = (0, 1, 59, 86399, 86400, 1_700_000_000, -1, -86401,
                   253402300799, -62135596800)
        nanos = (0, 1, 999, 1000, 123000, 1_000_000, 20_000_000, 999_999_999)
        for s in seconds:
            for n in nanos:
                for _ in range(2):  # the second time, from the cached second
                    timestamp = Timestamp(seconds=s, nanos=n)
                    self.assertEqual(_json_time(timestamp), timestamp.ToJsonString())
        for s, n in ((253402300800, 0), (1, -1), (1, 1_000_000_000)):
            timestamp = Timestamp(seconds=s, nanos=n)
            self.assertRaises(ValueError, timestamp.ToJsonString)
            self.assertRaises(ValueError, _json_time, timestamp)
