"""
The Google Cloud Pub/Sub queue backend: the production path.

Each job is published, through the official ``google-cloud-pubsub``
``PublisherClient``, to the topic of its queue.  The message body is the
``jack.Job`` envelope (protobuf binary); the routing fields are message
attributes, so a subscription can filter on them.

Threads: the client publishes from threads of its own and completes its
futures there.  Nothing here touches reactor state from those threads:
completions hop to the reactor with ``callFromThread``, and the client's
blocking calls (topic checks, ``stop``) run through ``deferToThread``.
"""

import threading
from functools import partial

from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from zope.interface import implementer

from jack.job_pb2 import Queue
from jackd.backends.noop import queue_name
from jackd.errors import ConfigError, InvalidArgument, ResourceExhausted, Unavailable
from jackd.interfaces import IQueueBackend

# Pub/Sub's own limits, which the client library does not check (the
# attribute ones) or checks only by raising from publish() (the size).
MAX_PUBLISH_REQUEST_BYTES = 10_000_000
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 1024

QUEUES = (Queue.QUEUE_IMMEDIATE, Queue.QUEUE_HIGH, Queue.QUEUE_MEDIUM, Queue.QUEUE_LOW)
DEFAULT_TOPICS = {queue: f"jack-{queue_name(queue)}" for queue in QUEUES}

# The errors the library retries by default, until our publish timeout.
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
        "queue": queue_name(job.queue),
        "enqueued_at": job.enqueued_at.ToJsonString(),
        "run_at": job.run_at.ToJsonString(),
        "max_retries": str(job.max_retries),
    }
    if job.trace_id:
        attributes["trace_id"] = job.trace_id
    return attributes


def _field_size(length: int) -> int:
    """Bytes of a length-delimited protobuf field (tag < 16) of C{length}."""
    return 1 + _varint_size(length) + length


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def request_size(topic_path: str, data_size: int, attributes: dict) -> int:
    """
    The encoded size of a ``PublishRequest`` carrying one message, as the
    client measures it against Pub/Sub's limit, computed without building
    (and copying the payload into) the message.
    """
    message = _field_size(data_size) if data_size else 0
    for key, value in attributes.items():
        entry = _field_size(len(key.encode("utf-8"))) + _field_size(len(value.encode("utf-8")))
        message += _field_size(entry)
    return _field_size(len(topic_path.encode("utf-8"))) + _field_size(message)


def check_message(topic_path, data_size, attributes) -> None:
    """
    Refuse a message real Pub/Sub would refuse.

    @param data_size: the length of the message body.
    @raise InvalidArgument: over the request size or an attribute limit;
        the field is the attribute (for ``trace_id``, the request field of
        the same name) or ``payload``.
    """
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidArgument(
            "attributes",
            f"are {len(attributes)}; Pub/Sub allows at most {MAX_ATTRIBUTES}",
        )
    for key, value in attributes.items():
        key_bytes = len(key.encode("utf-8"))
        if key_bytes > MAX_ATTRIBUTE_KEY_BYTES:
            raise InvalidArgument(
                key, f"is a {key_bytes}-byte attribute name; Pub/Sub allows at "
                f"most {MAX_ATTRIBUTE_KEY_BYTES} bytes",
            )
        value_bytes = len(value.encode("utf-8"))
        if value_bytes > MAX_ATTRIBUTE_VALUE_BYTES:
            raise InvalidArgument(
                key, f"is {value_bytes} bytes as a message attribute; Pub/Sub "
                f"allows at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes",
            )
    size = request_size(topic_path, data_size, attributes)
    if size > MAX_PUBLISH_REQUEST_BYTES:
        raise InvalidArgument(
            "payload",
            f"makes a {size}-byte Pub/Sub message with its attributes; Pub/Sub "
            f"accepts at most {MAX_PUBLISH_REQUEST_BYTES} bytes",
        )


@implementer(IQueueBackend)
class PubSubBackend(Service):
    """
    @param project: the Google Cloud project of the topics.
    @param topics: topic name (not path) per queue; L{DEFAULT_TOPICS} when
        C{None}.
    @param create_topics: create missing topics at start (and when a
        health check finds one gone) instead of refusing to start.
    @param publish_timeout: seconds after which a publish Pub/Sub has not
        confirmed answers ``Unavailable``; the library's retries stop then.
    @param max_outstanding: the most jobs waiting for Pub/Sub at once;
        more are refused with ``ResourceExhausted``.
    @param max_outstanding_bytes: the same bound, in message bytes.
    @param batch_latency: seconds the client waits to fill a batch; at
        most half of C{publish_timeout}, or jobs would time out waiting for
        their batch and be delivered all the same.
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
        self._create_topics = create_topics
        self._publish_timeout = publish_timeout
        self._max_outstanding = max_outstanding
        self._max_outstanding_bytes = max_outstanding_bytes
        self._batch_latency = batch_latency
        self._publisher = None
        self._outstanding = 0
        self._outstanding_bytes = 0
        # Deferreds that fire when the client finished a publish (confirmed
        # or failed): shutdown waits for all of them.
        self._in_flight = set()
        # Finished publishes waiting for their hop to the reactor thread.
        self._completions_lock = threading.Lock()
        self._completions = []
        self._hop_pending = False
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
        from google.auth.exceptions import DefaultCredentialsError
        from google.cloud import pubsub_v1

        # Made here, after twistd's fork: gRPC must not start before it.
        try:
            self._publisher = pubsub_v1.PublisherClient(
                batch_settings=pubsub_v1.types.BatchSettings(
                    max_latency=self._batch_latency
                ),
                transport=_transport_class(),
            )
        except DefaultCredentialsError as error:
            raise ConfigError(f"Pub/Sub: no Google credentials: {_first_line(error)}")
        # The library's deadline starts when a batch is sent, up to
        # batch_latency after the enqueue: together, within the timeout.
        retry_for = self._publish_timeout - self._batch_latency
        self._retry = api_retry.Retry(
            initial=0.1,
            maximum=min(5.0, retry_for),
            multiplier=2,
            predicate=api_retry.if_exception_type(*_RETRYABLE),
            timeout=retry_for,
        )
        self._rpc_timeout = retry_for
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
        waiting = len(self._in_flight)
        self._log.info(
            "Flushing the Pub/Sub publisher: {count} job(s) in flight", count=waiting
        )
        # stop() sends what is batched and refuses later publishes; the
        # futures say when each message is confirmed or failed for good.
        yield deferToThread(self._publisher.stop)
        # Every publish ends within the timeout; wait a little longer, never
        # for ever (a client thread that died would leave futures pending).
        flushed = DeferredList(list(self._in_flight))
        flushed.addTimeout(self._publish_timeout + 5.0, self._reactor, lambda *_: None)
        try:
            yield flushed
        except Exception:
            self._log.error(
                "Pub/Sub did not settle {count} publish(es) in time; stopping "
                "without their outcome (they may still be delivered)",
                count=len(self._in_flight),
            )
        publisher, self._publisher = self._publisher, None
        yield deferToThread(publisher.transport.close)
        self._log.info("Pub/Sub publisher flushed")

    # IQueueBackend.

    def validate(self, job):
        check_message(self._topics[job.queue], job.ByteSize(), attributes_of(job))

    def publish(self, jobs):
        outcomes = [None] * len(jobs)
        waiting = {}  # index -> Deferred firing with that job's outcome
        for index, job in enumerate(jobs):
            refusal, done = self._submit(job)
            if done is None:
                outcomes[index] = refusal
            else:
                waiting[index] = done
        if not waiting:
            return succeed(outcomes)
        # One answer for the call: every outcome, or Unavailable for those
        # Pub/Sub has not confirmed once the timeout passes (the client may
        # still deliver them: their outcome is unknown).
        answer = Deferred()

        def timed_out():
            self._failed_at = self._reactor.seconds()
            for index in waiting:
                outcomes[index] = Unavailable(
                    f"Pub/Sub did not confirm the job within {self._publish_timeout}s; "
                    "it may still be delivered: retry, and let consumers dedupe on job_id"
                )
            waiting.clear()
            answer.callback(outcomes)

        timer = self._reactor.callLater(self._publish_timeout, timed_out)

        def settle(outcome, index):
            if waiting.pop(index, None) is None:
                return  # answered already: timed out
            outcomes[index] = outcome
            if not waiting:
                timer.cancel()
                answer.callback(outcomes)

        for index, done in list(waiting.items()):
            done.addCallback(settle, index)
        return answer

    def _submit(self, job):
        """
        Hand C{job} to the client.

        @return: C{(refusal, None)} when it is refused before publishing
            (a ``JackError``), else C{(None, done)}: a Deferred firing on
            the reactor thread with C{None} once Pub/Sub returned a message
            id, or with the ``JackError`` that refused the job.
        """
        topic = self._topics[job.queue]
        data = job.SerializeToString()
        attributes = attributes_of(job)
        try:
            check_message(topic, len(data), attributes)
        except InvalidArgument as error:
            return error, None
        if self._publisher is None or not self.running:
            return Unavailable("the Pub/Sub backend is not running"), None
        size = len(data)
        if self._outstanding and (
            self._outstanding + 1 > self._max_outstanding
            or self._outstanding_bytes + size > self._max_outstanding_bytes
        ):
            return ResourceExhausted(
                f"{self._outstanding} jobs ({self._outstanding_bytes} bytes) are "
                "already waiting for Pub/Sub, the most this Jack holds "
                "(PUBSUB_MAX_OUTSTANDING, PUBSUB_MAX_OUTSTANDING_BYTES); retry later"
            ), None
        try:
            future = self._publisher.publish(
                topic, data, retry=self._retry, timeout=self._rpc_timeout, **attributes
            )
        except RuntimeError:  # stop() already ran: Jack is shutting down
            return Unavailable("Jack is shutting down: retry on another replica"), None
        self._outstanding += 1
        self._outstanding_bytes += size
        done = Deferred()
        self._in_flight.add(done)
        future.add_done_callback(partial(self._completed, done))
        done.addCallback(self._finished, size, job)
        done.addBoth(_passing(self._in_flight.discard, done))
        return None, done

    def _completed(self, done, future):
        """
        A publish finished: runs on a client thread (or here, if it was
        done already).  Completions queue up and hop to the reactor thread
        together, one wake-up for a whole batch rather than one per job.
        """
        with self._completions_lock:
            self._completions.append((done, future))
            if self._hop_pending:
                return
            self._hop_pending = True
        self._reactor.callFromThread(self._deliver_completions)

    def _deliver_completions(self):
        with self._completions_lock:
            completions, self._completions = self._completions, []
            self._hop_pending = False
        for done, future in completions:
            done.callback(future)

    def _finished(self, future, size, job):
        self._outstanding -= 1
        self._outstanding_bytes -= size
        error = future.exception()
        if error is None:
            self._failed_at = None
            return None
        outcome = self._error_for(error, job)
        if isinstance(outcome, Unavailable):
            self._failed_at = self._reactor.seconds()
        return outcome

    def _error_for(self, error, job):
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
            self._log.error(
                "Unexpected error publishing {job_id} to Pub/Sub: {error!r}",
                job_id=job.job_id,
                error=error,
            )
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


def _passing(f, *args):
    """A callback that calls C{f(*args)} and passes its result on."""

    def callback(result):
        f(*args)
        return result

    return callback


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
