"""
The Google Cloud Pub/Sub queue backend: the production path.

Each job is published to the topic of its queue.  The message body is the
``jack.Job`` envelope (protobuf binary); the routing fields are message
attributes, so a subscription can filter on them.

Jack batches the messages itself, on the reactor thread: per topic, the jobs
due go into one ``PublishRequest`` (at most L{MAX_PUBLISH_REQUEST_MESSAGES}
messages and L{MAX_PUBLISH_REQUEST_BYTES} bytes, Pub/Sub's limits).  A
C{publish} of several jobs (an EnqueueBulk, a batch of due jobs) sends its
requests once the reactor turn ends (with the jobs of the other calls of
that turn); a C{publish} of one job waits up to C{batch_latency} for others
to the same topic.  Each request is one gRPC call, started without
blocking, over the channel of the official client's transport
(``google-cloud-pubsub``'s ``PublisherClient`` makes the channel, with its
credentials and reconnect settings, and runs the topic checks); retryable
errors are retried from the reactor until the publish timeout.

Threads: gRPC completes its calls on a thread of its own.  Nothing here
touches reactor state from there: finished requests hop to the reactor with
``callFromThread``, together (one wake-up for all those that finished
meanwhile), and the client's blocking calls (topic checks, closing the
channel) run through ``deferToThread``.
"""

import random
from functools import partial

from google.api_core import exceptions as api_exceptions
from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from jack.job_pb2 import Queue
from jackd.backends.noop import queue_name
from jackd.errors import ConfigError, InvalidArgument, ResourceExhausted, Unavailable
from jackd.interfaces import IQueueBackend
from jackd.threads import ReactorQueue

# Pub/Sub's own limits: per publish request (messages, encoded bytes) and
# per message attribute.
MAX_PUBLISH_REQUEST_BYTES = 10_000_000
MAX_PUBLISH_REQUEST_MESSAGES = 1000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024

QUEUES = (Queue.QUEUE_IMMEDIATE, Queue.QUEUE_HIGH, Queue.QUEUE_MEDIUM, Queue.QUEUE_LOW)
DEFAULT_TOPICS = {queue: f"jack-{queue_name(queue)}" for queue in QUEUES}
_QUEUE_NAMES = {queue: queue_name(queue) for queue in QUEUES}

# The errors the client library retries by default: Jack retries them too,
# until the publish timeout, with the library's exponential backoff (a
# random wait up to 0.1 s, then up to twice as long each time, up to 5 s).
RETRY_INITIAL = 0.1
RETRY_MULTIPLIER = 2.0
RETRY_MAXIMUM = 5.0
_RETRYABLE = (
    api_exceptions.Aborted,
    api_exceptions.Cancelled,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.ResourceExhausted,
    api_exceptions.ServiceUnavailable,
    api_exceptions.Unknown,
)

# A health check or topic check gives up after this many seconds at most.
CHECK_TIMEOUT = 5.0

# gRPC waits up to 120 s between reconnect attempts by default: Pub/Sub back
# after a long outage would go unnoticed that long.  Retry every few seconds.
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 3000),
]

# After a publish fails (and none succeeded since), health reports NOT_SERVING
# for this long at most: long enough for load balancers to steer away, short
# enough that traffic comes back to find out whether Pub/Sub has recovered.
FAILURE_MEMORY = 30.0


def _transport_class():
    """
    The client's gRPC transport, with L{RECONNECT_OPTIONS} on its channel
    (for real Pub/Sub and for ``PUBSUB_EMULATOR_HOST`` alike).
    """
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    def create_channel(*args, options=(), **kwargs):
        return PublisherGrpcTransport.create_channel(
            *args, options=[*options, *RECONNECT_OPTIONS], **kwargs
        )

    class Transport(PublisherGrpcTransport):
        def __init__(self, *, channel=None, **kwargs):
            if isinstance(channel, grpc.Channel):
                # The emulator's plain channel, made by the client: ours instead.
                channel.close()
                channel = grpc.insecure_channel(kwargs["host"], options=RECONNECT_OPTIONS)
            super().__init__(channel=channel or create_channel, **kwargs)

    return Transport


def attributes_of(job) -> dict:
    """
    The message attributes of C{job}: the consumer contract in the README.
    """
    attributes = {
        "job_id": job.job_id,
        "producer_id": job.producer_id,
        "job_type": job.job_type,
        "queue": _QUEUE_NAMES.get(job.queue) or queue_name(job.queue),
        "enqueued_at": _json_time(job.enqueued_at),
        "run_at": _json_time(job.run_at),
        "max_retries": str(job.max_retries),
    }
    if job.trace_id:
        attributes["trace_id"] = job.trace_id
    return attributes


# The last whole second _json_time formatted, and its text: the jobs of a
# burst share their second, and datetime's formatting is most of the cost.
_last_second = (None, "")


def _json_time(timestamp) -> str:
    """
    C{timestamp.ToJsonString()} (RFC 3339, ``Z``, 0, 3, 6 or 9 fractional
    digits), character for character, formatting each second only once.
    """
    global _last_second
    seconds, nanos = timestamp.seconds, timestamp.nanos
    known, prefix = _last_second
    if known != seconds or not 0 <= nanos < 1_000_000_000:
        text = timestamp.ToJsonString()  # and its checks of the range
        _last_second = (seconds, text[:19])  # "YYYY-MM-DDTHH:MM:SS"
        return text
    if not nanos:
        return prefix + "Z"
    if not nanos % 1_000_000:
        return f"{prefix}.{nanos // 1_000_000:03d}Z"
    if not nanos % 1000:
        return f"{prefix}.{nanos // 1000:06d}Z"
    return f"{prefix}.{nanos:09d}Z"


def _field_size(length: int) -> int:
    """Bytes of a length-delimited protobuf field (tag < 16) of C{length}."""
    return 1 + _varint_size(length) + length


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _utf8_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def request_size(topic_path: str, data_size: int, attributes: dict) -> int:
    """
    The encoded size of a ``PublishRequest`` carrying one message, as
    Pub/Sub measures it against its limit, computed without building (and
    copying the payload into) the message.
    """
    message = _field_size(data_size) if data_size else 0
    for key, value in attributes.items():
        entry = _field_size(len(key.encode("utf-8"))) + _field_size(len(value.encode("utf-8")))
        message += _field_size(entry)
    return _field_size(len(topic_path.encode("utf-8"))) + _field_size(message)


def check_message(topic_path, data_size, attributes) -> int:
    """
    Refuse a message real Pub/Sub would refuse.

    @param data_size: the length of the message body.
    @return: L{request_size}: the bytes of a request carrying the message
        alone.
    @raise InvalidArgument: over the request size or an attribute limit;
        the field is the attribute (for ``trace_id``, the request field of
        the same name) or ``payload``.
    """
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            "attributes",
            f"are {len(attributes)}; Pub/Sub allows at most {MAX_ATTRIBUTES}",
        )
    # Sizes as in request_size, inlined (this runs for every job), with the
    # varints of lengths under 16384 (attributes within their limits).
    message = _field_size(data_size) if data_size else 0
    for key, value in attributes.items():
        key_bytes = len(key) if key.isascii() else len(key.encode("utf-8"))
        value_bytes = len(value) if value.isascii() else len(value.encode("utf-8"))
        if key_bytes > MAX_ATTRIBUTE_KEY_BYTES:
            raise InvalidArgument(
                key, f"is a {key_bytes}-byte attribute name; Pub/Sub allows at "
                f"most {MAX_ATTRIBUTE_KEY_BYTES} bytes",
            )
        if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES:
            raise InvalidArgument(
                key, f"is {value_bytes} bytes as a message attribute; Pub/Sub "
                f"allows at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes",
            )
        entry = (key_bytes + (2 if key_bytes < 128 else 3)
                 + value_bytes + (2 if value_bytes < 128 else 3))
        message += entry + (2 if entry < 128 else 3)
    size = _field_size(_utf8_size(topic_path)) + _field_size(message)
    if size > MAX_PUBLISH_REQUEST_BYTES:
        raise InvalidArgument(
            "payload",
            f"makes a {size}-byte Pub/Sub message with its attributes; Pub/Sub "
            f"accepts at most {MAX_PUBLISH_REQUEST_BYTES} bytes",
        )
    return size


class _Call:
    """
    One C{publish} call: its outcomes, and how many of its jobs Pub/Sub has
    still to confirm or refuse.  The call holds one count of its own while
    it hands its jobs out, so that it is never answered half-way.
    """

    __slots__ = ("outcomes", "waiting", "answer", "timer")

    def __init__(self, outcomes):
        self.outcomes = outcomes
        self.waiting = 1
        self.answer = Deferred()
        self.timer = None

    def settle(self, index, outcome):
        if not self.waiting:
            return  # answered already: timed out
        self.outcomes[index] = outcome
        self.waiting -= 1
        if not self.waiting:
            if self.timer is not None:
                self.timer.cancel()
            self.answer.callback(self.outcomes)


# The outcome of a job Pub/Sub has not answered for yet.
_PENDING = object()


class _Request:
    """
    One ``PublishRequest`` to a topic: filled on the reactor thread, then
    sent (and retried) as a whole.

    @ivar message: the ``PublishRequest`` (protobuf), messages in job order.
    @ivar jobs: C{(call, index, job, size)} per message: whose outcome it
        is, and its bytes as counted against the outstanding bound.
    @ivar size: the encoded bytes of C{message}.
    @ivar deadline: when the first job put in it times out (reactor
        seconds): no attempt starts after it.
    @ivar timer: the batch latency's while filling, then a retry's.
    @ivar soon: whether C{timer} sends it at the end of this reactor turn.
    @ivar backoff: the longest wait before the next retry.
    """

    __slots__ = ("topic", "message", "jobs", "size", "deadline", "timer", "soon", "backoff")

    def __init__(self, topic, message, size, deadline):
        self.topic = topic
        self.message = message
        self.jobs = []
        self.size = size
        self.deadline = deadline
        self.timer = None
        self.soon = False
        self.backoff = RETRY_INITIAL


@implementer(IQueueBackend)
class PubSubBackend(Service):
    """
    @param project: the Google Cloud project of the topics.
    @param topics: topic name (not path) per queue; L{DEFAULT_TOPICS} when
        C{None}.
    @param create_topics: create missing topics at start (and when a
        health check finds one gone) instead of refusing to start.
    @param publish_timeout: seconds after which a publish Pub/Sub has not
        confirmed answers ``Unavailable``; retries stop then.
    @param max_outstanding: the most jobs waiting for Pub/Sub at once;
        more are refused with ``ResourceExhausted``.
    @param max_outstanding_bytes: the same bound, in message bytes.
    @param batch_latency: seconds a job published alone waits for others to
        the same topic, to share one request with them; at most half of
        C{publish_timeout}, or jobs would time out waiting for their batch
        and be delivered all the same.  The jobs of a C{publish} call of
        several go when the reactor turn ends.
    @param reactor: the reactor (timers and thread hops).
    """

    _log = Logger()

    def __init__(
        self,
        project,
        reactor,
        topics=None,
        create_topics=False,
        publish_timeout=10.0,
        max_outstanding=10_000,
        max_outstanding_bytes=100 * 1024 * 1024,
        batch_latency=0.01,
    ):
        if not 0 <= batch_latency <= publish_timeout / 2:
            raise ValueError(
                f"batch latency {batch_latency}s must be at most half the publish "
                f"timeout ({publish_timeout}s)"
            )
        self.project = project
        self._reactor = reactor
        self._topics = {
            queue: f"projects/{project}/topics/{name}"
            for queue, name in (topics or DEFAULT_TOPICS).items()
        }
        # The bytes of each topic's field in a request.
        self._topic_sizes = {
            path: _field_size(_utf8_size(path)) for path in self._topics.values()
        }
        self._create_topics = create_topics
        self._publish_timeout = publish_timeout
        self._max_outstanding = max_outstanding
        self._max_outstanding_bytes = max_outstanding_bytes
        self._batch_latency = batch_latency
        self._publisher = None
        # The Publish call on the client's channel (None: not running), the
        # request class, and the metadata of each topic's calls.
        self._publish_rpc = None
        self._request_class = None
        self._metadata = {}
        self._rpc_error = None  # grpc.RpcError, imported at start
        # Jobs admitted and not yet confirmed or refused by Pub/Sub (also
        # those whose caller was answered already: timed out).
        self._outstanding = 0
        self._outstanding_bytes = 0
        # The request being filled, per topic.
        self._batches = {}
        # Requests sent and not finished (in flight, or waiting to retry),
        # and Deferreds waiting for there to be none (stopService).
        self._sending = set()
        self._drained = []
        # Finished calls, on their way from gRPC's thread to the reactor's.
        self._completions = ReactorQueue(reactor, self._deliver_completions)
        # Topics a publisher-only account may not read (warned once).
        self._unreadable = set()
        # Why the last health check found Pub/Sub unusable (None: usable).
        self._problem = None
        # When the last publish failed, if none was confirmed since (None:
        # the last outcome was a success).  Health follows it for a while.
        self._failed_at = None
        self.description = (
            f"Google Cloud Pub/Sub (project {project}, topics "
            + ", ".join(path.rsplit("/", 1)[1] for path in self._topics.values())
            + ")"
        )

    @property
    def topics(self) -> dict:
        """Topic path per queue."""
        return dict(self._topics)

    # Start and stop.

    def startService(self):
        super().startService()
        return self._start()

    @inlineCallbacks
    def _start(self):
        import grpc
        from google.api_core.gapic_v1 import routing_header
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import pubsub_v1
        from google.pubsub_v1.services.publisher.transports.base import DEFAULT_CLIENT_INFO
        from google.pubsub_v1.types import PublishRequest, PublishResponse

        # Made here, after twistd's fork: gRPC must not start before it.
        try:
            self._publisher = pubsub_v1.PublisherClient(transport=_transport_class())
        except DefaultCredentialsError as error:
            raise ConfigError(f"Pub/Sub: no Google credentials: {_first_line(error)}")
        # Publish on the transport's own channel (credentials, reconnect
        # backoff), not through its logging interceptor: with DEBUG logging
        # on, that waits for each call's result, which would block the
        # reactor.  The metadata is what the library's publish sends.
        self._rpc_error = grpc.RpcError
        self._request_class = PublishRequest.pb()
        self._publish_rpc = self._publisher.transport.grpc_channel.unary_unary(
            "/google.pubsub.v1.Publisher/Publish",
            request_serializer=self._request_class.SerializeToString,
            response_deserializer=PublishResponse.pb().FromString,
        )
        client = DEFAULT_CLIENT_INFO.to_grpc_metadata()
        self._metadata = {
            path: (client, routing_header.to_grpc_metadata((("topic", path),)))
            for path in self._topics.values()
        }
        result = yield deferToThread(self._check_topics)
        if not self.running:
            return  # stopped while checking: nothing to report
        created, unreadable, problem = result
        if problem is not None:
            raise ConfigError(f"Pub/Sub: {problem}")
        self._log_topics(created, unreadable)

    def _log_topics(self, created, unreadable):
        """What a topic check found, logged on the reactor thread."""
        for path in created:
            self._log.warn("Pub/Sub topic {topic} did not exist: created it", topic=path)
        for path in unreadable - self._unreadable:
            self._unreadable.add(path)
            self._log.warn(
                "Pub/Sub: may not read topic {topic} (a publisher-only account?): "
                "cannot check that it exists; publishing will tell",
                topic=path,
            )

    def _check_topics(self):
        """
        Check every topic exists (in a thread, blocking); create the missing
        ones when told to.  A topic the account may not read (a
        publisher-only account) counts as there: Pub/Sub answered.

        Runs in a thread: reads no state but the publisher and the
        settings, and logs nothing (the caller logs what it returns).

        @return: C{(created, unreadable, problem)}: the paths of the topics
            created, the set of those the account may not read, and why Jack
            cannot publish (C{None} when it can).
        """
        created, unreadable = [], set()
        for queue, path in self._topics.items():
            try:
                self._publisher.get_topic(
                    request={"topic": path}, timeout=CHECK_TIMEOUT, retry=None
                )
            except api_exceptions.NotFound:
                if not self._create_topics:
                    return created, unreadable, (
                        f"topic {path} (queue {queue_name(queue)}) does not exist: "
                        "create it, or start Jack with --pubsub-create-topics true "
                        "(PUBSUB_CREATE_TOPICS=true)"
                    )
                try:
                    self._publisher.create_topic(
                        request={"name": path}, timeout=CHECK_TIMEOUT, retry=None
                    )
                except api_exceptions.AlreadyExists:
                    continue  # another replica made it a moment ago
                except api_exceptions.GoogleAPICallError as error:
                    return created, unreadable, (
                        f"cannot create topic {path}: {_first_line(error)}"
                    )
                created.append(path)
            except api_exceptions.PermissionDenied:
                unreadable.add(path)
            except api_exceptions.GoogleAPIError as error:
                return created, unreadable, f"cannot reach {path}: {_first_line(error)}"
        return created, unreadable, None

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._publisher is None:
            return
        self._log.info(
            "Flushing the Pub/Sub publisher: {count} job(s) in flight",
            count=self._outstanding,
        )
        # Send what is batched; later publishes are refused (not running).
        for request in list(self._batches.values()):
            self._send(request)
        if self._sending:
            # Every request ends within the timeout; wait a little longer,
            # never for ever.
            drained = Deferred()
            self._drained.append(drained)
            drained.addTimeout(self._publish_timeout + 5.0, self._reactor)
            try:
                yield drained
            except TimeoutError:
                self._log.error(
                    "Pub/Sub did not settle {count} publish request(s) in time; "
                    "stopping without their outcome (they may still be delivered)",
                    count=len(self._sending),
                )
        publisher, self._publisher = self._publisher, None
        self._publish_rpc = None  # no attempt starts after this
        for request in list(self._sending):
            if request.timer is not None:  # waiting to retry: give up
                request.timer.cancel()
                request.timer = None
                self._finish(request, api_exceptions.Cancelled("Jack is shutting down"))
        # Closing the channel ends the calls still in flight (as CANCELLED).
        yield deferToThread(publisher.transport.close)
        self._log.info("Pub/Sub publisher flushed")

    # IQueueBackend.

    def validate(self, job):
        check_message(self._topics[job.queue], job.ByteSize(), attributes_of(job))

    def publish(self, jobs):
        outcomes = [None] * len(jobs)
        call = _Call(outcomes)
        # Jobs published alone wait for company up to the batch latency;
        # the jobs of a call of several are a batch already: they go once
        # this reactor turn ends, with those of the other calls of the turn.
        latency = self._batch_latency if len(jobs) == 1 else 0
        touched = {}  # topic -> the request being filled when last added to
        for index, job in enumerate(jobs):
            topic = self._topics[job.queue]
            data = job.SerializeToString()
            attributes = attributes_of(job)
            try:
                size = check_message(topic, len(data), attributes)
            except InvalidArgument as error:
                outcomes[index] = error
                continue
            refusal = self._refusal(len(data))
            if refusal is not None:
                outcomes[index] = refusal
                continue
            size -= self._topic_sizes[topic]  # the message's share of a request
            request = self._batches.get(topic)
            if request is not None and (
                request.size + size > MAX_PUBLISH_REQUEST_BYTES
                # A call of several does not join a request still waiting
                # for single jobs' company: it would inherit their earlier
                # deadline (and stop retrying before its own timeout).  That
                # request goes now; it would have gone this turn anyway.
                or (not latency and not request.soon and touched.get(topic) is not request)
            ):
                self._send(request)
                request = None
            if request is None:
                request = self._batches[topic] = _Request(
                    topic,
                    self._request_class(topic=topic),
                    self._topic_sizes[topic],
                    self._reactor.seconds() + self._publish_timeout,
                )
            request.message.messages.add(data=data, attributes=attributes)
            request.size += size
            request.jobs.append((call, index, job, len(data)))
            self._outstanding += 1
            self._outstanding_bytes += len(data)
            outcomes[index] = _PENDING
            call.waiting += 1
            if len(request.jobs) == MAX_PUBLISH_REQUEST_MESSAGES:
                self._send(request)
            else:
                touched[topic] = request
        for request in touched.values():
            if self._batches.get(request.topic) is not request:
                continue  # sent already
            if request.timer is None or (not latency and not request.soon):
                if request.timer is not None:
                    request.timer.cancel()
                request.timer = self._reactor.callLater(latency, self._latency_passed, request)
                request.soon = not latency
        call.waiting -= 1  # the call's own count: every job is handed out
        if not call.waiting:
            return succeed(outcomes)
        call.timer = self._reactor.callLater(self._publish_timeout, self._timed_out, call)
        return call.answer

    def _refusal(self, size):
        """
        Why a valid job of C{size} bytes cannot be taken now: a
        ``JackError``, or C{None} when it can.
        """
        if self._publish_rpc is None or not self.running:
            return Unavailable("the Pub/Sub backend is not running")
        if self._outstanding and (
            self._outstanding + 1 > self._max_outstanding
            or self._outstanding_bytes + size > self._max_outstanding_bytes
        ):
            return ResourceExhausted(
                f"{self._outstanding} jobs ({self._outstanding_bytes} bytes) are "
                "already waiting for Pub/Sub, the most this Jack holds "
                "(PUBSUB_MAX_OUTSTANDING, PUBSUB_MAX_OUTSTANDING_BYTES); retry later"
            )
        return None

    def _timed_out(self, call):
        """
        The publish timeout passed before Pub/Sub answered for all of
        C{call}'s jobs: those it has not answered for are Unavailable (their
        request may still succeed: their outcome is unknown).
        """
        self._failed_at = self._reactor.seconds()
        outcomes = call.outcomes
        for index, outcome in enumerate(outcomes):
            if outcome is _PENDING:
                outcomes[index] = Unavailable(
                    f"Pub/Sub did not confirm the job within {self._publish_timeout}s; "
                    "it may still be delivered: retry, and let consumers dedupe on job_id"
                )
        call.waiting = 0
        call.answer.callback(outcomes)

    def _latency_passed(self, request):
        request.timer = None
        self._send(request)

    def _send(self, request):
        """Stop filling C{request} and send it."""
        if self._batches.get(request.topic) is request:
            del self._batches[request.topic]
        if request.timer is not None:
            request.timer.cancel()
            request.timer = None
        self._sending.add(request)
        self._attempt(request)

    def _attempt(self, request):
        """Start one call of C{request}, with the time left as its deadline."""
        request.timer = None
        left = request.deadline - self._reactor.seconds()
        if left <= 0:
            self._finish(request, api_exceptions.DeadlineExceeded(
                "the publish timeout passed before the request could be sent"
            ))
            return
        if self._publish_rpc is None:
            self._finish(request, api_exceptions.Cancelled("Jack is shutting down"))
            return
        try:
            future = self._publish_rpc.future(
                request.message, timeout=left, metadata=self._metadata[request.topic]
            )
        except Exception as error:  # a closed channel, a bug
            self._finish(request, error)
            return
        future.add_done_callback(partial(self._completed, request))

    def _completed(self, request, future):
        """
        A call finished: runs on a gRPC thread (or here, if it was done
        already).  Completions hop to the reactor thread together: one
        wake-up for every call that finished meanwhile.
        """
        self._completions.put((request, future))

    def _deliver_completions(self, completions):
        for request, future in completions:
            self._answered(request, future)

    def _answered(self, request, future):
        """Pub/Sub answered one call of C{request}: finish it, or retry."""
        try:
            error = future.exception()
            if error is None:
                ids = len(future.result().message_ids)
                if ids != len(request.jobs):
                    error = RuntimeError(
                        f"Pub/Sub returned {ids} message ids for {len(request.jobs)} messages"
                    )
        except Exception as raised:  # cancelled locally
            error = raised
        if isinstance(error, self._rpc_error):
            error = api_exceptions.from_grpc_error(error)
        if isinstance(error, _RETRYABLE) and self._publish_rpc is not None:
            wait = random.uniform(0.0, min(request.backoff, RETRY_MAXIMUM))
            if self._reactor.seconds() + wait < request.deadline:
                request.backoff *= RETRY_MULTIPLIER
                request.timer = self._reactor.callLater(wait, self._attempt, request)
                return
        self._finish(request, error)

    def _finish(self, request, error):
        """
        C{request} is done: confirmed (C{error} is C{None}) or failed for
        good; each of its jobs gets the outcome.
        """
        self._sending.discard(request)
        if error is None:
            self._failed_at = None
            for call, index, _, size in request.jobs:
                self._outstanding -= 1
                self._outstanding_bytes -= size
                call.settle(index, None)
        else:
            if not isinstance(error, (api_exceptions.GoogleAPICallError, api_exceptions.RetryError)):
                self._log.error(
                    "Unexpected error publishing {count} job(s) to Pub/Sub "
                    "(the first {job_id}): {error!r}",
                    count=len(request.jobs),
                    job_id=request.jobs[0][2].job_id,
                    error=error,
                )
            for call, index, _, size in request.jobs:
                self._outstanding -= 1
                self._outstanding_bytes -= size
                outcome = self._error_for(error)
                if isinstance(outcome, Unavailable):
                    self._failed_at = self._reactor.seconds()
                call.settle(index, outcome)
        if not self._sending and self._drained:
            drained, self._drained = self._drained, []
            for d in drained:
                if not d.called:
                    d.callback(None)

    def _error_for(self, error):
        """The ``JackError`` of each job of a request that failed with C{error}."""
        if isinstance(error, api_exceptions.InvalidArgument):
            return InvalidArgument("job", f"refused by Pub/Sub: {_first_line(error)}")
        if isinstance(error, (api_exceptions.NotFound, api_exceptions.PermissionDenied)):
            return Unavailable(
                f"Pub/Sub refused the job ({_first_line(error)}); it was not "
                "stored: retry once the topic or permission is fixed"
            )
        if isinstance(error, (api_exceptions.GoogleAPICallError, api_exceptions.RetryError)):
            reason = _first_line(error)
        else:
            reason = type(error).__name__
        return Unavailable(
            f"Pub/Sub did not confirm the job ({reason}); it may still be "
            "delivered: retry, and let consumers dedupe on job_id"
        )

    def check(self):
        if self._publisher is None:
            return succeed(False)
        d = deferToThread(self._check_topics)
        d.addCallback(self._checked)
        return d

    def _checked(self, result):
        created, unreadable, problem = result
        self._log_topics(created, unreadable)
        if problem is None and self._problem is not None and self._problem != _PUBLISHES_FAIL:
            # Pub/Sub answers again after it did not: earlier failures are
            # history, and publishes will say whether it works.
            self._failed_at = None
        if problem is None and self._failed_at is not None:
            if self._reactor.seconds() - self._failed_at < FAILURE_MEMORY:
                problem = _PUBLISHES_FAIL
        if problem != self._problem:
            self._problem = problem
            if problem is not None:
                self._log.warn("Pub/Sub cannot take jobs: {problem}", problem=problem)
            else:
                self._log.info("Pub/Sub takes jobs again")
        return problem is None


_PUBLISHES_FAIL = (
    "publishes fail and none has succeeded since (topics answer, publishes do not)"
)


def _first_line(error) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def from_options(options, reactor):
    """
    The backend for ``QUEUE_BACKEND=pubsub``, from twistd's options.

    @raise ConfigError: PUBSUB_PROJECT is unset.
    """
    if not options["pubsub-project"]:
        raise ConfigError(
            "QUEUE_BACKEND=pubsub needs PUBSUB_PROJECT (--pubsub-project): the "
            "Google Cloud project of the topics"
        )
    latency, timeout = options["pubsub-batch-latency"], options["pubsub-publish-timeout"]
    if latency > timeout / 2:
        raise ConfigError(
            f"PUBSUB_BATCH_LATENCY ({latency:g}s) must be at most half of "
            f"PUBSUB_PUBLISH_TIMEOUT ({timeout:g}s): jobs would time out waiting "
            "for their batch, and be delivered all the same"
        )
    return PubSubBackend(
        options["pubsub-project"],
        reactor,
        topics={queue: options[f"pubsub-topic-{queue_name(queue)}"] for queue in QUEUES},
        create_topics=options["pubsub-create-topics"],
        publish_timeout=options["pubsub-publish-timeout"],
        max_outstanding=options["pubsub-max-outstanding"],
        max_outstanding_bytes=options["pubsub-max-outstanding-bytes"],
        batch_latency=options["pubsub-batch-latency"],
    )
