"""
Standard gRPC health (``grpc.health.v1.Health``), run as a sibling service
of the API: ``""`` and ``jack.BackgroundJobs`` report whether Jack can accept
jobs (the queue backend), ``jack.AdminService`` reports the config storage.
From the first moment of shutdown everything reports NOT_SERVING.
"""

import asyncio

from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from jackd.api.edge import as_deferred

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

JOBS_SERVICE = "jack.BackgroundJobs"
ADMIN_SERVICE = "jack.AdminService"


class _HealthServicer(health.aio.HealthServicer):
    """
    The standard servicer, except that L{close} ends every ``Watch``
    stream: a watcher (a load balancer, a client's health checking) would
    otherwise hold shutdown for the whole grace period.
    """

    def __init__(self):
        super().__init__()
        self._closed = asyncio.Event()

    def close(self):
        self._closed.set()

    async def Watch(self, request, context):
        watching = asyncio.ensure_future(super().Watch(request, context))
        closed = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait({watching, closed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (watching, closed):
            task.cancel()
        if watching.done() and not watching.cancelled():
            watching.result()


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

    def register(self, server):
        """Add the health servicer to a grpc.aio server (at server start)."""
        self._servicer = _HealthServicer()
        for name in self._checks:
            # Until the first check answers, nothing claims to be ready.
            as_deferred(self._servicer.set(name, NOT_SERVING))
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
                changes.append(as_deferred(self._servicer.set(name, status)))
        return gatherResults(changes)

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._servicer is not None:
            yield as_deferred(self._servicer.enter_graceful_shutdown())
        self._log.info(
            "Shutting down: health is NOT_SERVING; draining for {delay}s "
            "before refusing new calls",
            delay=self._drain_delay,
        )
        if self._drain_delay > 0:
            yield deferLater(self._clock, self._drain_delay, lambda: None)
        if self._servicer is not None:
            self._servicer.close()
