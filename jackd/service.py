"""The root service: Jack's children, started in order and stopped in reverse."""

from twisted.application.service import MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.logger import Logger

from jackd.errors import ConfigError


class JackService(MultiService):
    """
    Starts its children in the order they were added (storage, backend,
    scheduler, grpc, health), one after another: a child's C{startService}
    may return a Deferred (loading a snapshot, checking topics, connecting
    to a database), and the next child starts only once it fired, so the API
    takes no call before what it needs is ready.

    Stops them in reverse, one after another: health goes NOT_SERVING and
    drains first, then the API stops taking calls and lets those in flight
    finish, then the scheduler, the backend (which flushes) and the storage
    stop.  (``MultiService`` would start and stop them all at once.)

    @param on_start_failure: called with the exception when a child fails
        to start (after the failure is logged); twistd's entry point stops
        the reactor and exits with status 1.
    @ivar ready: a Deferred firing with C{True} once every child started,
        C{False} when one failed to (set by L{startService}).
    """

    _log = Logger()

    def __init__(self, on_start_failure=None):
        super().__init__()
        self._on_start_failure = on_start_failure
        self.ready = None

    def startService(self):
        self._log.info(
            "Jack starting: config storage {storage}; queue backend {backend}; "
            "schedule store {schedule}",
            storage=self.getServiceNamed("storage").description,
            backend=self.getServiceNamed("backend").description,
            schedule=self.getServiceNamed("scheduler").store.description,
        )
        Service.startService(self)
        self.ready = self._start_children()

    @inlineCallbacks
    def _start_children(self):
        for child in self:
            if not self.running:
                return False
            try:
                yield maybeDeferred(child.startService)
            except Exception as error:
                if not self.running:
                    # Stopped while starting (SIGTERM during start-up): what
                    # failed was cut short, not broken.
                    self._log.info("Jack stopped while starting {name}", name=child.name)
                elif isinstance(error, ConfigError):
                    # Expected (a missing topic, an unreachable bucket): one line.
                    self._log.critical("Jack cannot start: {reason}", reason=str(error))
                    self._start_failed(error)
                else:
                    self._log.failure(
                        "Jack cannot start: starting {name} failed", name=child.name
                    )
                    self._start_failed(error)
                return False
        return True

    def _start_failed(self, error):
        if self._on_start_failure is not None:
            self._on_start_failure(error)

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        for child in reversed(list(self)):
            if not child.running:
                continue
            try:
                yield maybeDeferred(child.stopService)
            except Exception:
                self._log.failure("Stopping {name} failed", name=child.name)
        self._log.info("Jack drained and stopped")
