"""
What keeps other web pages in the operator's browser from using the console:

- B{Host names.}  Only a request whose C{Host} header names this console
  (a loopback name or address, the address it listens on, or a name in
  C{CONSOLE_ALLOWED_HOSTS}) is served: a page on a domain that an attacker
  re-points at 127.0.0.1 (DNS rebinding) gets a 400.
- B{Same origin.}  A POST must come from a page of the console itself: its
  C{Origin} (or, without one, its C{Referer}) names the console's own
  C{Host}, or else C{Sec-Fetch-Site} says C{same-origin} or C{none}.  Pages
  on another port of the same host are another origin, so this holds where
  C{SameSite} cookies do not (cookies ignore ports).
- B{CSRF tokens.}  The cookie holds a random session id; a form's token is an
  HMAC of that id under a secret that lives only in this process.  A page
  that plants its own cookie (from another port of the same host) cannot
  make the matching token.
- B{Signed notices.}  "Producer created" and "Job type created" show only
  with a short-lived proof made for this browser's session.
- B{Request size.}  A request body over L{MAX_BODY_BYTES} is answered 413
  before it is read (L{LimitedRequest}).
"""

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from urllib.parse import urlsplit

from twisted.logger import Logger
from twisted.web.server import Request

SESSION_COOKIE = b"jack_console_csrf"
_SESSION = re.compile(rb"[A-Za-z0-9_-]{43}")
# Host header: a name, an IPv4 address or a bracketed IPv6 address, and a port.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")
_NAME = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")

# How long a "created" notice can be shown after the creation.
NOTICE_LIFETIME = 600

# Larger than any form of the console (its text fields take a few KB).
MAX_BODY_BYTES = 64 * 1024
# How long a client refused for its body size has to read the 413.
REFUSED_BODY_LINGER = 5

_log = Logger()


def host_of(header):
    """
    The host part of a C{Host} header value: lowercase, without the port,
    the brackets of an IPv6 address or a trailing dot.

    @param header: the header's bytes.
    @return: the host, or C{None} when C{header} is not a host and port.
    """
    try:
        text = header.decode("ascii")
    except UnicodeDecodeError:
        return None
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    host = match.group(1).lower()
    if host.startswith("["):
        return host[1:-1]
    return host.rstrip(".") or None


def host_names(text):
    """
    Parse C{CONSOLE_ALLOWED_HOSTS}: host names or IP addresses, separated by
    commas or spaces, without ports.

    @return: a tuple of lowercase names.
    @raise ValueError: one is not a host name or address.
    """
    names = []
    for word in re.split(r"[\s,]+", text.strip()):
        if not word:
            continue
        name = word.lower().rstrip(".")
        if name.startswith("[") and name.endswith("]"):
            name = name[1:-1]
        try:
            name = str(ipaddress.ip_address(name))
        except ValueError:
            if not _NAME.fullmatch(name) or len(name) > 253:
                raise ValueError(
                    f"{word!r} is not a host name or IP address (no port, no scheme)"
                ) from None
        names.append(name)
    return tuple(names)


def _mac(secret, *parts):
    message = b"\0".join(part.encode("utf-8") for part in parts)
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Guard:
    """
    The console's checks of where a request comes from, and its tokens.

    @param interface: the address the console listens on (C{0.0.0.0} or
        C{::}: every address of the machine).
    @param allowed_hosts: further host names the console answers to (see
        L{host_names}).
    @param secret: the key of tokens and proofs; a new random one by default
        (so they are good until the console restarts).
    @param clock: a function returning the time in seconds.
    """

    def __init__(self, interface="127.0.0.1", allowed_hosts=(), secret=None, clock=time.time):
        address = ipaddress.ip_address(interface)
        self._any_address = address.is_unspecified
        self._interface = address
        self._names = frozenset(("localhost", *allowed_hosts))
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._clock = clock

    def host_allowed(self, header):
        """
        Whether a request with C{Host} header C{header} (bytes, or C{None}
        when there is none: not a browser) is for this console.
        """
        if header is None:
            return True
        host = host_of(header)
        if host is None:
            return False
        if host in self._names:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        # A literal address cannot be re-pointed by DNS.
        return address.is_loopback or self._any_address or address == self._interface

    def same_origin(self, host, origin, referer, fetch_site):
        """
        Whether a POST comes from a page of this console.

        @param host: its C{Host} header (bytes or C{None}).
        @param origin: its C{Origin} header (bytes or C{None}).
        @param referer: its C{Referer} header (bytes or C{None}).
        @param fetch_site: its C{Sec-Fetch-Site} header (bytes or C{None}).
        """
        if fetch_site is not None and fetch_site.lower() not in (b"same-origin", b"none"):
            return False
        for source in (origin, referer):
            if source is not None:
                return host is not None and _netloc(source) == host.lower()
        return fetch_site is not None

    def new_session(self):
        """A new random session id, for the cookie."""
        return secrets.token_urlsafe(32)

    def session_of(self, cookie):
        """
        The session id in cookie value C{cookie} (bytes), or C{None} when it
        is missing or not one.
        """
        if cookie is None or not _SESSION.fullmatch(cookie):
            return None
        return cookie.decode("ascii")

    def csrf_token(self, session):
        """The token that the forms of C{session} carry."""
        return _mac(self._secret, "csrf", session)

    def csrf_ok(self, session, sent):
        """Whether C{sent} (bytes from the form) is C{session}'s token."""
        return hmac.compare_digest(sent, self.csrf_token(session).encode("ascii"))

    def notice_proof(self, session, *about):
        """
        A proof, good for L{NOTICE_LIFETIME} seconds and only for
        C{session}, that something (C{about}: strings) was just created.
        """
        expires = str(int(self._clock()) + NOTICE_LIFETIME)
        return f"{expires}.{_mac(self._secret, 'notice', session, expires, *about)}"

    def notice_ok(self, session, proof, *about):
        """Whether C{proof} (text) is a current L{notice_proof} for C{session} and C{about}."""
        expires, _, mac = proof.partition(".")
        if session is None or not re.fullmatch("[0-9]{1,12}", expires):
            return False
        if int(expires) < self._clock():
            return False
        expected = _mac(self._secret, "notice", session, expires, *about)
        return hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii"))


def _netloc(url):
    """The lowercase host and port of C{url} (bytes), or "" (C{Origin: null})."""
    try:
        return urlsplit(url.decode("ascii")).netloc.lower().encode("ascii")
    except (UnicodeDecodeError, ValueError):
        return b""


TOO_LARGE_BODY = (
    f"The console takes requests of at most {MAX_BODY_BYTES} bytes.\n".encode("ascii")
)
TOO_LARGE = (
    b"HTTP/1.1 413 Content Too Large\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"X-Content-Type-Options: nosniff\r\n"
    b"Content-Length: " + str(len(TOO_LARGE_BODY)).encode("ascii") + b"\r\n"
    b"Connection: close\r\n\r\n" + TOO_LARGE_BODY
)


def _ignore(*args):
    return None


class LimitedRequest(Request):
    """
    A request whose body may be at most L{MAX_BODY_BYTES} long.  A longer one
    (by its C{Content-Length}, or as its chunks arrive) is answered 413 at
    once, before it is read or parsed; the rest of the body is dropped and
    the connection closed.
    """

    _received = 0
    _refused = False

    def gotLength(self, length):
        if length is not None and length > MAX_BODY_BYTES:
            self._refuse(length)
        super().gotLength(None if self._refused else length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > MAX_BODY_BYTES:
            self._refuse(None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if not self._refused:
            super().requestReceived(command, path, version)

    def _refuse(self, length):
        self._refused = True
        channel = self.channel
        _log.info(
            "Refused a request body of {size} from {peer}: over {limit} bytes",
            size=f"{length} bytes" if length is not None else "unknown length",
            peer=channel.transport.getPeer(),
            limit=MAX_BODY_BYTES,
        )
        # Read no more of this connection: what still arrives is dropped.
        channel.dataReceived = channel.lineReceived = channel.rawDataReceived = _ignore
        channel.transport.write(TOO_LARGE)
        # Close our side after the answer, and the whole connection when the
        # client has closed its side or after a few seconds: closing at once,
        # with its body still arriving, could reset the connection before
        # the client reads the answer.
        channel.setTimeout(REFUSED_BODY_LINGER)
        channel.transport.loseWriteConnection()
