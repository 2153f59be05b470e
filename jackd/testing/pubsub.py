"""
Google's Pub/Sub emulator, started by the tests on a free port::

    emulator = shared_emulator(self)       # one per test run, started once
    emulator.create_topics(["jack-high"])
    emulator.create_subscription("jack-high", "sub-high")
    messages = emulator.pull("sub-high", count=3)

It is the real ``gcloud beta emulators pubsub start`` (Java, offline), and
the helpers talk to it with the official client library, so everything
crosses the real wire protocol.  These calls block: they are for tests.
"""

import os
import shutil
import socket
import time

from jackd.testing.services import EmulatorProcess

PROJECT = "jack-test"


class PubSubEmulator(EmulatorProcess):
    """
    One emulator process.  C{stop()} then C{start()} restarts it on the same
    port (it forgets every topic and subscription when it stops).
    """

    name = "Pub/Sub emulator"
    missing_reason = "gcloud (with the Pub/Sub emulator) is not installed"
    poll_interval = 0.2

    def __init__(self, project=PROJECT, port=None):
        super().__init__(port)
        self.project = project
        self.host = f"127.0.0.1:{self.port}"

    @staticmethod
    def available() -> bool:
        return shutil.which("gcloud") is not None

    def env(self) -> dict:
        """The environment that points a Google client at this emulator."""
        return {"PUBSUB_EMULATOR_HOST": self.host}

    def start(self, timeout=90.0):
        super().start(timeout)

    def _command(self):
        return ["gcloud", "beta", "emulators", "pubsub", "start",
                f"--host-port={self.host}", "--quiet"]

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        try:
            self.publisher().list_topics(
                request={"project": f"projects/{self.project}"}, timeout=2
            )
        except Exception:
            return False
        return True

    # Clients, made per call so that they read this emulator's address.

    def publisher(self):
        from google.cloud import pubsub_v1
        import grpc
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        channel = grpc.insecure_channel(self.host)
        return pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(channel=channel)
        )

    def subscriber(self):
        from google.cloud import pubsub_v1
        import grpc
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        channel = grpc.insecure_channel(self.host)
        return pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=channel)
        )

    def topic_path(self, topic):
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription):
        return f"projects/{self.project}/subscriptions/{subscription}"

    def create_topics(self, topics):
        """Create each topic that does not exist yet."""
        from google.api_core.exceptions import AlreadyExists

        publisher = self.publisher()
        for topic in topics:
            try:
                publisher.create_topic(request={"name": self.topic_path(topic)}, timeout=10)
            except AlreadyExists:
                pass

    def create_subscription(self, topic, subscription, filter=""):
        """A pull subscription on C{topic} (created if needed)."""
        from google.api_core.exceptions import AlreadyExists

        self.create_topics([topic])
        try:
            self.subscriber().create_subscription(
                request={
                    "name": self.subscription_path(subscription),
                    "topic": self.topic_path(topic),
                    "filter": filter,
                    "ack_deadline_seconds": 60,
                },
                timeout=10,
            )
        except AlreadyExists:
            pass

    def pull(self, subscription, count, timeout=30.0):
        """
        Pull and acknowledge messages until C{count} arrived or C{timeout}
        seconds passed; then briefly look for more, so that extra
        (duplicate) messages show up too.

        @return: a list of ``google.pubsub_v1.ReceivedMessage``s, with the
            time each was pulled as C{(received_at, message)} pairs.
        """
        subscriber = self.subscriber()
        path = self.subscription_path(subscription)
        received = []
        deadline = time.monotonic() + timeout
        settle_until = None
        while True:
            now = time.monotonic()
            if len(received) >= count and settle_until is None:
                settle_until = now + 0.5
            if now >= (settle_until or deadline):
                break
            response = subscriber.pull(
                request={"subscription": path, "max_messages": 1000,
                         "return_immediately": True},
                timeout=10,
            )
            pulled_at = time.time()
            if response.received_messages:
                received.extend((pulled_at, m) for m in response.received_messages)
                subscriber.acknowledge(
                    request={
                        "subscription": path,
                        "ack_ids": [m.ack_id for m in response.received_messages],
                    },
                    timeout=10,
                )
            else:
                time.sleep(0.05)
        return received


def shared_emulator(testCase) -> PubSubEmulator:
    """
    The emulator shared by every test of this run, started on first use and
    stopped when the run ends.  Skips (or fails, under
    C{JACK_REQUIRE_SERVICES}) C{testCase} when gcloud is missing.
    Tests share it: give topics and subscriptions names of their own.
    """
    return PubSubEmulator.shared(testCase)


def unique(prefix) -> str:
    """A topic or subscription name no other test uses."""
    unique.counter += 1
    return f"{prefix}-{os.getpid()}-{unique.counter}"


unique.counter = 0
