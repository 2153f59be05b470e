"""
Standard gRPC health (``grpc.health.v1.Health``), run as a sibling service
of the API: ``""`` and ``jack.BackgroundJobs`` report whether Jack can accept
jobs (the queue backend), ``jack.AdminService`` reports the config storage.
From the first moment of shutdown everything reports NOT_SERVING.
"""

import threading
from concurrent import futures
from functools import partial

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN

JOBS_SERVICE = "jack.BackgroundJobs"
ADMIN_SERVICE = "jack.AdminService"


class _HealthServicer(health_pb2_grpc.HealthServicer):
    """
    ``grpc.health.v1.Health`` for grpcio's threaded server, answering as the
    standard servicer (``grpc_health.v1.health``) does, with two differences:

    - it never holds its lock while gRPC sends.  grpcio's send waits for the
      server's ``_serve`` thread, which runs a closing stream's callback,
      which takes the servicer's lock: the standard servicer deadlocks the
      whole server when a watcher leaves during a status change.  Here sends
      are queued under the lock (so each watcher gets its statuses in order)
      and made by one thread of their own;
    - L{close} ends every ``Watch`` stream (and any that starts later): a
      watcher (a load balancer, a client's health checking) would otherwise
      hold shutdown for the whole grace period.

    ``Watch`` streams hold no thread while they wait: grpcio's non-blocking
    streaming hands the method a callback to send each response with.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._statuses = {}
        self._watchers = {}  # service -> the send callbacks of its streams
        self._shutting_down = False  # statuses no longer change
        self._closed = False  # streams end at once
        self._sends = futures.ThreadPoolExecutor(1, thread_name_prefix="health-send")

    def Check(self, request, context):
        with self._lock:
            status = self._statuses.get(request.service)
        if status is None:
            context.set_code(grpc.StatusCode.NOT_FOUND)
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context, send_response_callback):
        service, send = request.service, send_response_callback
        with self._lock:
            response = health_pb2.HealthCheckResponse(
                status=self._statuses.get(service, SERVICE_UNKNOWN)
            )
            if not self._closed:
                self._watchers.setdefault(service, set()).add(send)
                self._sends.submit(send, response)
                closed = False
            else:
                closed = True
        if closed:  # nothing else will be sent: end it here, lock not held
            send(response)
            send(None)
            return
        forget = partial(self._forget, service, send)
        if not context.add_callback(forget):
            forget()

    Watch.experimental_non_blocking = True

    def _forget(self, service, send):
        # Run by gRPC's _serve thread when a stream ends: the lock is only
        # ever held for moments, never across a send.
        with self._lock:
            self._watchers.get(service, set()).discard(send)

    def set(self, service, status):
        with self._lock:
            if not self._shutting_down:
                self._set(service, status)

    def _set(self, service, status):
        # Under self._lock.  A send to a stream that ended returns at once.
        self._statuses[service] = status
        for send in self._watchers.get(service, ()):
            self._sends.submit(send, health_pb2.HealthCheckResponse(status=status))

    def enter_graceful_shutdown(self):
        """Every service NOT_SERVING, for good."""
        with self._lock:
            if self._shutting_down:
                return
            for service in self._statuses:
                self._set(service, NOT_SERVING)
            self._shutting_down = True

    def close(self):
        with self._lock:
            self._closed = True
            for sends in self._watchers.values():
                for send in sends:
                    self._sends.submit(send, None)  # ends the stream with OK
            self._watchers.clear()
        # The sending thread ends once the queue is empty; at interpreter
        # exit it is joined, after gRPC ended every stream.
        self._sends.shutdown(wait=False)


class HealthService(Service):
    """
    @param backend: an ``IQueueBackend``, behind ``""`` and
        ``jack.BackgroundJobs``.
    @param store: an ``IConfigStore``, behind ``jack.AdminService``.
    @param clock: an ``IReactorTime``.
    @param interval: seconds between checks.
    @ivar check_timeout: seconds a check may take before it counts as
        failed: at least C{interval}, and 5 s (a check reads a remote
        service).
    @param drain_delay: seconds to keep answering NOT_SERVING at shutdown
        before the API stops taking calls, so load balancers notice.
    """

    _log = Logger()

    def __init__(self, backend, store, clock, interval, drain_delay):
        self._checks = {
            "": backend.check,
            JOBS_SERVICE: backend.check,
            ADMIN_SERVICE: store.check,
        }
        self._clock = clock
        self._interval = interval
        self.check_timeout = max(interval, 5.0)
        self._drain_delay = drain_delay
        self._servicer = None
        self._loop = None
        self._statuses = {}

    def register(self, server, hop=None):
        """Add the health servicer to the gRPC server (at server start)."""
        self._servicer = _HealthServicer()
        for name in self._checks:
            # Until the first check answers, nothing claims to be ready.
            self._servicer.set(name, NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        return health.SERVICE_NAME

    def startService(self):
        super().startService()
        self._loop = LoopingCall(self.check_now)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def check_now(self) -> Deferred:
        """
        Run every check once (each distinct one once) and publish each
        one's statuses as soon as it answers, so a slow config storage does
        not hold back the health of the queue backend (and the reverse).

        @return: Deferred firing once every check answered or timed out.
        """
        names_of = {}
        for name, check in self._checks.items():
            names_of.setdefault(check, []).append(name)
        done = []
        for check, names in names_of.items():
            d = maybeDeferred(check)
            d.addTimeout(self.check_timeout, self._clock)
            d.addErrback(self._check_failed, names)
            d.addCallback(lambda ok, names=names: self._publish(dict.fromkeys(names, ok)))
            done.append(d)
        return gatherResults(done)

    def _check_failed(self, failure, names):
        if failure.check(defer.TimeoutError):
            self._log.warn(
                "The health check behind {services} took longer than {timeout}s: "
                "counted as failed",
                services=", ".join(repr(name) for name in names),
                timeout=self.check_timeout,
            )
        else:
            self._log.failure("A health check failed", failure)
        return False

    def _publish(self, results):
        if not self.running or self._servicer is None:
            return
        for name, ok in results.items():
            status = SERVING if ok else NOT_SERVING
            if self._statuses.get(name) != status:
                self._statuses[name] = status
                self._log.info(
                    "Health of {service!r} is now {status}",
                    service=name,
                    status=health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                )
                self._servicer.set(name, status)

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._servicer is not None:
            self._servicer.enter_graceful_shutdown()
        self._log.info(
            "Shutting down: health is NOT_SERVING; draining for {delay}s "
            "before refusing new calls",
            delay=self._drain_delay,
        )
        if self._drain_delay > 0:
            yield deferLater(self._clock, self._drain_delay, lambda: None)
        if self._servicer is not None:
            self._servicer.close()
