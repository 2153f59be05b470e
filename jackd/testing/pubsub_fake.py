"""
A Pub/Sub server for what the emulator cannot show: an account that may
publish but not read topics (the emulator has no IAM), and a Pub/Sub whose
topics answer while its publishes hang.  It speaks the real
``google.pubsub.v1.Publisher`` protocol over gRPC, so the official client
talks to it unchanged (``PUBSUB_EMULATOR_HOST``)::

    fake = FakePubSub(readable=False)
    fake.start()
    ... PUBSUB_EMULATOR_HOST=fake.host ...
    fake.published     # [(topic, PubsubMessage)]
    fake.requests      # [(topic, messages, bytes)], one per Publish call
    fake.stop()
"""

import itertools
import threading
from concurrent import futures

import grpc
from google.pubsub_v1.types import (
    GetTopicRequest,
    PublishRequest,
    PublishResponse,
    PubsubMessage,
    Topic,
)


class FakePubSub:
    """
    @param readable: C{False} to answer ``GetTopic`` with PERMISSION_DENIED,
        as real Pub/Sub does for an account without ``pubsub.topics.get``;
        C{True} to answer that every topic exists.
    @ivar hang: topic paths whose ``Publish`` calls hang until the client
        gives up (or the server stops); the others are accepted at once.
        Change it while running.
    @ivar refuse: topic path -> C{(grpc.StatusCode, details)}: ``Publish``
        calls to that topic fail with that status.
    @ivar flaky: topic path -> how many more ``Publish`` calls to it fail
        with UNAVAILABLE before one is accepted.
    @ivar published: C{(topic, PubsubMessage)} per message accepted.
    @ivar requests: C{(topic, message count, encoded bytes)} per ``Publish``
        call received, accepted or not.
    """

    # Above Pub/Sub's 10,000,000-byte request limit, so that the client's
    # splitting, not this server, is what a test sees.
    MAX_REQUEST_BYTES = 16 * 1024 * 1024

    def __init__(self, readable=True):
        self.readable = readable
        self.hang = set()
        self.refuse = {}
        self.flaky = {}
        self._released = threading.Event()
        self.published = []
        self.requests = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server = None
        self.host = None

    def _get_topic(self, request, context):
        if not self.readable:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "User not authorized to perform this action.",
            )
        return Topic.pb()(name=request.topic)

    def _publish(self, request, context):
        with self._lock:
            self.requests.append(
                (request.topic, len(request.messages), request.ByteSize())
            )
            flaky = self.flaky.get(request.topic, 0)
            if flaky:
                self.flaky[request.topic] = flaky - 1
        if flaky:
            context.abort(grpc.StatusCode.UNAVAILABLE, "try again (fake)")
        if request.topic in self.refuse:
            context.abort(*self.refuse[request.topic])
        if request.topic in self.hang:
            # Until the caller's deadline passes, or the server stops.
            while context.is_active() and not self._released.wait(0.05):
                pass
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "hung (fake)")
        ids = []
        with self._lock:
            for message in request.messages:
                self.published.append((request.topic, PubsubMessage.wrap(message)))
                ids.append(str(next(self._ids)))
        return PublishResponse.pb()(message_ids=ids)

    def start(self):
        handler = grpc.method_handlers_generic_handler(
            "google.pubsub.v1.Publisher",
            {
                "GetTopic": grpc.unary_unary_rpc_method_handler(
                    self._get_topic,
                    request_deserializer=GetTopicRequest.pb().FromString,
                    response_serializer=Topic.pb().SerializeToString,
                ),
                "Publish": grpc.unary_unary_rpc_method_handler(
                    self._publish,
                    request_deserializer=PublishRequest.pb().FromString,
                    response_serializer=PublishResponse.pb().SerializeToString,
                ),
            },
        )
        self._released.clear()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[("grpc.max_receive_message_length", self.MAX_REQUEST_BYTES)],
        )
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        self.host = f"127.0.0.1:{port}"

    def stop(self):
        if self._server is not None:
            self._released.set()
            self._server.stop(0).wait()
            self._server = None
