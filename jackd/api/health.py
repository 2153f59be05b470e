"""
Standard gRPC health (``grpc.health.v1.Health``), run as a sibling service
of the API: ``""`` and ``jack.BackgroundJobs`` report whether Jack can accept
jobs (the queue backend), ``jack.AdminService`` reports the config storage.
From the first moment of shutdown everything reports NOT_SERVING.
"""

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

JOBS_SERVICE = "jack.BackgroundJobs"
ADMIN_SERVICE = "jack.AdminService"


class _HealthServicer(health.HealthServicer):
    """
    The standard servicer (its ``Watch`` streams hold no thread while they
    wait), except that L{close} ends every ``Watch`` stream: a watcher (a
    load balancer, a client's health checking) would otherwise hold
    shutdown for the whole grace period.
    """

    def close(self):
        with self._lock:
            watchers = [
                send for sends in self._send_response_callbacks.values() for send in sends
            ]
        for send in watchers:
            send(None)  # ends the stream with OK


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
        # Telling watchers of a change waits for gRPC to send it: done in a
        # thread of its own, never on the reactor's, and one at a time so
        # that changes arrive in order (while the service runs).
        self._notifier = None

    def register(self, server, hop=None):
        """Add the health servicer to the gRPC server (at server start)."""
        self._servicer = _HealthServicer()
        for name in self._checks:
            # Until the first check answers, nothing claims to be ready.
            self._servicer.set(name, NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        return health.SERVICE_NAME

    def _notify(self, function, *args) -> Deferred:
        from twisted.internet import reactor

        return deferToThreadPool(reactor, self._notifier, function, *args)

    def startService(self):
        super().startService()
        self._notifier = ThreadPool(1, 1, "health-notifier")
        self._notifier.start()
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
            return None
        changes = []
        for name, ok in results.items():
            status = SERVING if ok else NOT_SERVING
            if self._statuses.get(name) != status:
                self._statuses[name] = status
                self._log.info(
                    "Health of {service!r} is now {status}",
                    service=name,
                    status=health_pb2.HealthCheckResponse.ServingStatus.Name(status),
                )
                changes.append(self._notify(self._servicer.set, name, status))
        return gatherResults(changes)

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._servicer is not None:
            yield self._notify(self._servicer.enter_graceful_shutdown)
        self._log.info(
            "Shutting down: health is NOT_SERVING; draining for {delay}s "
            "before refusing new calls",
            delay=self._drain_delay,
        )
        if self._drain_delay > 0:
            yield deferLater(self._clock, self._drain_delay, lambda: None)
        if self._servicer is not None:
            yield self._notify(self._servicer.close)
        self._notifier.stop()
        self._notifier = None
