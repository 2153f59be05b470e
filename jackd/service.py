"""The root service: Jack's children, started in order and stopped in reverse."""

from twisted.application.service import MultiService, Service
from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.logger import Logger


class JackService(MultiService):
    """
    Starts its children in the order they were added (storage, backend,
    scheduler, grpc, health) and stops them in reverse, one after another:
    health goes NOT_SERVING and drains first, then the API stops taking calls
    and lets those in flight finish, then the scheduler, the backend (which
    flushes) and the storage stop.  (``MultiService`` would stop them all at
    once.)
    """

    _log = Logger()

    def startService(self):
        self._log.info(
            "Jack starting: config storage {storage}; queue backend {backend}; "
            "schedule store {schedule}",
            storage=self.getServiceNamed("storage").description,
            backend=self.getServiceNamed("backend").description,
            schedule=self.getServiceNamed("scheduler").store.description,
        )
        super().startService()

    @inlineCallbacks
    def stopService(self):
        Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield maybeDeferred(child.stopService)
            except Exception:
                self._log.failure("Stopping {name} failed", name=child.name)
        self._log.info("Jack drained and stopped")
