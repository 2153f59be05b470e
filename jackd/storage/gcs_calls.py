"""
How Jack's calls to GCS fail and end: the kinds of failure found in a pool
thread (L{classify} sorts the client library's exceptions into them), and
the deadline of each store operation, which cuts the connections its
requests still hold when it passes.
"""

import contextlib
import functools
import re
import socket
import threading
import time

# What can go wrong with GCS, as found in a pool thread; the reactor thread
# turns them into JackErrors (or, at start, a ConfigError).


class GCSError(Exception):
    """GCS could not be used; the message says why, in one line."""


class Unreachable(GCSError):
    """GCS cannot be reached now (transport, timeouts, 5xx): retryable."""


class Refused(GCSError):
    """GCS answered and refused the request (400, 403, ...)."""


class Busy(GCSError):
    """The call waited past its deadline without starting."""


class Stopping(GCSError):
    """The store stopped while the call ran."""


class DeadlinePassed(Exception):
    """The operation's deadline passed before this request could start."""


UNREACHABLE, REFUSED = "unreachable", "refused"

_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _short(error) -> str:
    """The gist of a transport error: '[Errno 111] Connection refused'."""
    text = str(error)
    found = _ERRNO.search(text)
    if found:
        return found.group(0).strip()
    if "timed out" in text.lower():
        return "timed out"
    return first_line(error)


def first_line(error, limit=200) -> str:
    text = (getattr(error, "message", None) or str(error) or type(error).__name__).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def classify(error, bucket, endpoint, timeout):
    """
    What an exception from the client library means.

    @return: C{(kind, reason)}: L{UNREACHABLE} for transport errors,
        timeouts, 5xx, 408, 429, credentials that cannot be fetched and
        answers that are not GCS's JSON API (retry later); L{REFUSED} when
        GCS, or the configuration, refused the request; C{reason} is one
        line for the operator.
    """
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth
    from requests import exceptions as http
    from urllib3 import exceptions as http_transport

    if isinstance(error, DeadlinePassed):
        return UNREACHABLE, f"no answer from {endpoint} within {timeout:g}s"
    if isinstance(error, api.RetryError):
        cause = error.cause if error.cause is not None else error
        return UNREACHABLE, f"no answer from {endpoint} within {timeout:g}s ({_short(cause)})"
    if isinstance(error, api.GoogleAPICallError):
        code = error.code
        if code is None or code >= 500 or code in (408, 429):
            return UNREACHABLE, f"{endpoint} answered {code}: {first_line(error)}"
        if isinstance(error, api.NotFound):
            return REFUSED, f"bucket {bucket!r} does not exist at {endpoint}"
        if isinstance(error, api.Forbidden):
            return REFUSED, (
                f"access to bucket {bucket!r} denied at {endpoint}: {first_line(error)}"
            )
        if isinstance(error, api.Unauthorized):
            return REFUSED, f"credentials refused at {endpoint}: {first_line(error)}"
        return REFUSED, f"{endpoint} answered {code}: {first_line(error)}"
    if isinstance(error, (http.InvalidSchema, http.MissingSchema, http.InvalidURL)):
        return REFUSED, f"cannot use the endpoint {endpoint!r}: {first_line(error)}"
    if isinstance(error, http.InvalidJSONError):
        return UNREACHABLE, (
            f"{endpoint} answered something that is not GCS's JSON API "
            f"({type(error).__name__}: {first_line(error)})"
        )
    if isinstance(error, (http.RequestException, http_transport.HTTPError, OSError)):
        return UNREACHABLE, f"cannot reach {endpoint} ({_short(error)})"
    if isinstance(error, auth.DefaultCredentialsError):
        return REFUSED, f"no usable Google credentials: {first_line(error)}"
    if isinstance(error, auth.GoogleAuthError):
        return UNREACHABLE, f"cannot get a Google access token: {_short(error)}"
    return UNREACHABLE, (
        f"{endpoint} gave an answer the client library could not use "
        f"({type(error).__name__}: {first_line(error)})"
    )


# Deadlines, and cutting the connections of operations past theirs.

_local = threading.local()


def current_deadline():
    """The deadline of the operation this thread works for, or C{None}."""
    return getattr(_local, "deadline", None)


@contextlib.contextmanager
def working_under(deadline):
    """(In a thread.)  The requests this thread makes belong to C{deadline}."""
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = None


def _cut(connection):
    """Shut the socket of a urllib3 connection: a read blocked on it ends."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Deadline:
    """
    When one store operation must be over.  Its requests take their
    timeouts from it; the connections they take are cut when it passes.

    @ivar sliding: moves on with every L{progress} (a refresh).
    @ivar started: a pool thread began the operation.
    @ivar expired: it passed; requests under it fail at once.
    """

    def __init__(self, seconds, sliding=False):
        self.seconds = seconds
        self.sliding = sliding
        self.at = time.monotonic() + seconds
        self.started = False
        self.expired = False
        self.timer = None  # the reactor's DelayedCall (reactor thread only)
        self.result = None  # the caller's Deferred (reactor thread only)
        self._lock = threading.Lock()
        self._connections = set()

    def remaining(self) -> float:
        """
        @return: the seconds left.
        @raise DeadlinePassed: none are.
        """
        left = self.at - time.monotonic()
        if self.expired or left <= 0:
            raise DeadlinePassed()
        return left

    def progress(self):
        """A request of a sliding operation succeeded: start counting again."""
        if self.sliding:
            self.at = time.monotonic() + self.seconds

    def watch(self, connection):
        """Cut C{connection} if the deadline passes while this operation holds it."""
        with self._lock:
            if not self.expired:
                self._connections.add(connection)
                connection.jack_deadline = self
                return
        _cut(connection)

    def forget(self, connection):
        """This operation gave C{connection} back."""
        with self._lock:
            self._connections.discard(connection)
            if getattr(connection, "jack_deadline", None) is self:
                connection.jack_deadline = None

    def expire(self):
        """The deadline passed: cut every connection the operation holds."""
        with self._lock:
            self.expired = True
            connections, self._connections = self._connections, set()
        for connection in connections:
            _cut(connection)


class _Watching:
    """
    A urllib3 connection pool that hands the connections a thread takes to
    the deadline of the operation that thread works for.
    """

    def _get_conn(self, timeout=None):
        connection = super()._get_conn(timeout)
        deadline = current_deadline()
        if deadline is not None:
            deadline.watch(connection)
        return connection

    def _put_conn(self, conn):
        deadline = getattr(conn, "jack_deadline", None)
        if deadline is not None:
            deadline.forget(conn)
        super()._put_conn(conn)


@functools.cache
def _watching_pools():
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchingHTTPConnectionPool(_Watching, HTTPConnectionPool):
        pass

    class WatchingHTTPSConnectionPool(_Watching, HTTPSConnectionPool):
        pass

    return {"http": WatchingHTTPConnectionPool, "https": WatchingHTTPSConnectionPool}


def watch_connections(session) -> bool:
    """
    Make C{session} (the client's ``requests.Session``) take its
    connections from pools that cut them at their operation's deadline.

    @return: whether it could (a transport of another kind is left alone:
        its calls still end at their deadline for the caller, but a thread
        may stay busy until GCS answers).
    """
    adapters = getattr(session, "adapters", None)
    if not adapters:
        return False
    watched = False
    for adapter in adapters.values():
        manager = getattr(adapter, "poolmanager", None)
        if manager is None or not hasattr(manager, "pool_classes_by_scheme"):
            continue
        manager.pool_classes_by_scheme = dict(_watching_pools())
        manager.clear()
        watched = True
    return watched


def daemon_thread(*args, **kwargs):
    """Pool threads never keep the process alive (a GCS that never answers)."""
    return threading.Thread(*args, daemon=True, **kwargs)
