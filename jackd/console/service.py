"""The console as a Twisted service: an HTTP listener and its gRPC channel."""

from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web.server import Site

from jackd.aio import as_deferred
from jackd.console.guard import LimitedRequest


class ConsoleService(Service):
    """
    Serves C{resource} over HTTP on C{interface}:C{port} (request bodies
    limited by ``jackd.console.guard.LimitedRequest``) and opens the client's
    gRPC channel at start; closes both at stop.

    @param port: TCP port (0: any free one; L{port} says which once started).
    @param interface: the address to listen on.
    @param client: the ``jackd.console.client.AdminClient``.
    @param resource: the root ``IResource`` (``jackd.console.web.Console``).
    @param reactor: an ``IReactorTCP``.
    """

    _log = Logger()

    def __init__(self, port, interface, client, resource, reactor):
        self.port = port
        self.interface = interface
        self._client = client
        self._site = Site(resource, requestFactory=LimitedRequest)
        self._site.displayTracebacks = False
        self._reactor = reactor
        self._listening = None

    @property
    def url(self):
        host = f"[{self.interface}]" if ":" in self.interface else self.interface
        return f"http://{host}:{self.port}/"

    def startService(self):
        super().startService()
        self._client.open()
        self._listening = self._reactor.listenTCP(
            self.port, self._site, interface=self.interface
        )
        self.port = self._listening.getHost().port
        self._log.info(
            "Jack Console on {url}, using Jack's AdminService at {address}",
            url=self.url,
            address=self._client.address,
        )

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._listening is not None:
            listening, self._listening = self._listening, None
            yield listening.stopListening()
        yield as_deferred(self._client.close())
        self._log.info("Jack Console stopped")
