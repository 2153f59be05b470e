"""
The SSH manhole: a Python prompt inside the running daemon, for operators.

Off unless ``MANHOLE_PORT`` is set.  It listens on 127.0.0.1 unless
``MANHOLE_INTERFACE`` says otherwise and accepts only the public keys in the
authorized-keys file ``MANHOLE_AUTHORIZED_KEYS`` names, for any user name
(the file is read again at each login, so removing a key takes effect
without a restart).  There is no password and no telnet manhole.  Ed25519,
ECDSA and RSA (rsa-sha2-256/512) user keys work.  Like OpenSSH's
StrictModes, a key file (or its directory) that group or others can write
is refused.

Sessions need a terminal (``ssh -t``; ``ssh -tt`` when a script pipes
statements in): the end of the input ends the session.

The host key is the OpenSSH private key file ``MANHOLE_HOST_KEY`` names
(an Ed25519 key is written there when the file does not exist yet); without
one, Jack makes a new Ed25519 key at each start and logs its fingerprint.

The prompt's namespace (L{namespace}) holds the root service, the parsed
options, the storage, backend and scheduler, and C{stats()}.

Importing ``twisted.conch.manhole*`` installs the default reactor, so those
imports happen inside L{ManholeService.startService}, after Jack installed
the asyncio reactor.
"""

import os
import stat
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.service import Service
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.interfaces import IConchUser
from twisted.conch.ssh import keys
from twisted.conch.ssh.channel import SSHChannel
from twisted.conch.ssh.transport import SSHServerTransport
from twisted.cred.portal import Portal
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from zope.interface import implementer

from jackd.errors import ConfigError
from jackd.stats import Stats

_log = Logger()

AUTHORIZED_KEYS = "MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys)"
HOST_KEY = "MANHOLE_HOST_KEY (--manhole-host-key)"

# The signature algorithms of the user keys the manhole accepts.  Twisted
# advertises only its host key's in server-sig-algs (twisted/twisted#12107),
# and OpenSSH and paramiko then never offer an RSA key.
USER_KEY_ALGORITHMS = (
    b"ssh-ed25519",
    b"ecdsa-sha2-nistp256",
    b"ecdsa-sha2-nistp384",
    b"ecdsa-sha2-nistp521",
    b"rsa-sha2-512",
    b"rsa-sha2-256",
)


class ManholeTransport(SSHServerTransport):
    """The SSH server transport, advertising L{USER_KEY_ALGORITHMS} (RFC 8308)."""

    def sendExtInfo(self, extensions):
        super().sendExtInfo([
            (name, b",".join(USER_KEY_ALGORITHMS) if name == b"server-sig-algs" else value)
            for name, value in extensions
        ])


def read_authorized_keys(path):
    """
    The public keys in the OpenSSH authorized-keys file at C{path}: one key
    a line (``ssh-ed25519 AAAA... comment``).  Blank lines and comments are
    skipped; so is, with a warning naming its line number, every line that
    is not a usable public key (key options such as ``from="..."`` in front
    of a key are not supported: such a line is skipped too), so that one bad
    line never locks out the keys on the others.

    @raise OSError: the file cannot be read.
    """
    found = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                found.append(keys.Key.fromString(line, type="public_openssh"))
            except Exception as error:  # noqa: BLE001 (one bad line, logged)
                # Not only BadKeyError: cryptography raises what it likes on
                # keys it cannot load (NotImplementedError for a point that
                # is not on its curve, UnsupportedAlgorithm for a curve).
                _log.warn(
                    "{path} line {line}: skipped, not a usable public key "
                    "({error_type}: {error})",
                    path=path, line=number, error_type=type(error).__name__,
                    error=str(error) or "-",
                )
    return found


def unsafe_mode(path, private=False):
    """
    Why C{path} (a key file) must not be trusted, as OpenSSH's StrictModes
    decides: group or others can write it, or its directory (unless the
    directory is sticky, as /tmp is).  For a C{private} key, readable by group
    or others counts too.

    @return: the reason, or C{None} when the file is safe.
    @raise OSError: the file or its directory cannot be looked at.
    """
    real = os.path.realpath(path)
    mode = os.stat(real).st_mode
    if mode & 0o022:
        return f"group or others can write it (chmod go-w {path})"
    if private and mode & 0o044:
        return f"group or others can read it (chmod go-r {path})"
    directory = os.path.dirname(real) or "."
    directory_mode = os.stat(directory).st_mode
    if directory_mode & 0o022 and not directory_mode & stat.S_ISVTX:
        return f"group or others can write its directory {directory} (chmod go-w {directory})"
    return None


def check_authorized_keys(path):
    """
    @raise ConfigError: C{path} is empty, cannot be read or holds no
        usable public key.
    """
    where = AUTHORIZED_KEYS
    if not path:
        raise ConfigError(
            f"MANHOLE_PORT needs {where}: the file of the public keys the SSH "
            "manhole accepts"
        )
    try:
        found = read_authorized_keys(path)
        unsafe = unsafe_mode(path)
    except OSError as error:
        raise ConfigError(f"{where} {path}: cannot read it: {error.strerror}") from None
    if unsafe:
        raise ConfigError(f"{where} {path}: refused, {unsafe}")
    if not found:
        raise ConfigError(f"{where} {path}: holds no usable public key")


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """
    The keys of one authorized-keys file, for any user name, read again at
    each login.  A file that has become unreadable, or that group or others
    can write (see L{unsafe_mode}), accepts nobody.
    """

    def __init__(self, path):
        self.path = path

    def getAuthorizedKeys(self, username):
        try:
            unsafe = unsafe_mode(self.path)
            if unsafe is None:
                return read_authorized_keys(self.path)
        except OSError as error:
            _log.error(
                "Manhole login refused: cannot read {path}: {error}",
                path=self.path,
                error=error.strerror,
            )
            return []
        _log.error("Manhole login refused: {path}: {unsafe}", path=self.path, unsafe=unsafe)
        return []


def _new_host_key():
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


def load_host_key(path):
    """
    The manhole's SSH host key: the private key in C{path}, written there
    first (Ed25519, mode 0600) when the file does not exist; a new key when
    C{path} is empty.  A file that group or others can read is used with a
    warning.

    @raise ConfigError: the file cannot be read or written, holds no
        unencrypted private key, or group or others can write it (or its
        directory).
    """
    where = HOST_KEY
    if not path:
        return _new_host_key()
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        key = _new_host_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(key.toString("openssh"))
        except OSError as error:
            raise ConfigError(f"{where} {path}: cannot create it: {error.strerror}") from None
        return key
    except OSError as error:
        raise ConfigError(f"{where} {path}: {error.strerror}") from None
    try:
        key = keys.Key.fromString(data)
    except (keys.BadKeyError, keys.EncryptedKeyError, ValueError) as error:
        raise ConfigError(f"{where} {path}: not an SSH private key ({error})") from None
    if key.isPublic():
        raise ConfigError(f"{where} {path}: holds a public key; the host key must be private")
    try:
        writable, readable = unsafe_mode(path), unsafe_mode(path, private=True)
    except OSError as error:
        raise ConfigError(f"{where} {path}: {error.strerror}") from None
    if writable:
        raise ConfigError(f"{where} {path}: refused, {writable}")
    if readable:
        _log.warn(
            "{where} {path}: {problem}; whoever can read it can pose as this manhole",
            where=where, path=path, problem=readable,
        )
    return key


def fingerprint(key):
    """C{key}'s fingerprint as OpenSSH prints it: ``SHA256:...``, no padding."""
    return "SHA256:" + key.fingerprint(keys.FingerprintFormats.SHA256_BASE64).rstrip("=")


def namespace(root, options, counts, reactor):
    """
    The manhole prompt's names.

    @param root: the root ``JackService`` (its children: storage, backend,
        scheduler, grpc, health).
    @param options: the parsed ``jackd.tap.Options``.
    @param counts: the edge's job outcome counter (see ``jackd.stats``).
    """
    storage = root.getServiceNamed("storage")
    backend = root.getServiceNamed("backend")
    scheduler = root.getServiceNamed("scheduler")
    return {
        "root": root,
        "config": options,
        "storage": storage,
        "backend": backend,
        "scheduler": scheduler,
        "stats": Stats(counts, scheduler, backend, storage),
        "reactor": reactor,
    }


class ManholeService(Service):
    """
    An SSH server whose sessions are a Python prompt (Twisted Conch's
    ``ColoredManhole``) over C{namespace}.

    @param port: TCP port (0: any free one; L{port} says which once started).
    @param interface: the address to listen on.
    @param authorized_keys: path of the authorized-keys file.
    @param host_key: the server's private ``twisted.conch.ssh.keys.Key``.
    @param namespace: the prompt's globals.
    @param reactor: an ``IReactorTCP``.
    """

    def __init__(self, port, interface, authorized_keys, host_key, namespace, reactor):
        self.port = port
        self.interface = interface
        self.authorized_keys = authorized_keys
        self.host_key = host_key
        self.namespace = namespace
        self._reactor = reactor
        self._listening = None

    def factory(self):
        """The SSH server factory (imports Conch's manhole modules)."""
        from twisted.conch.manhole_ssh import ConchFactory, TerminalRealm
        from twisted.conch.manhole_tap import chainedProtocolFactory

        realm = TerminalRealm()
        realm.sessionFactory = _terminal_session()
        realm.chainedProtocolFactory = chainedProtocolFactory(self.namespace)
        checker = SSHPublicKeyChecker(AuthorizedKeysFile(self.authorized_keys))
        factory = ConchFactory(Portal(realm, [checker]))
        factory.protocol = ManholeTransport
        # Class-level dicts on ConchFactory: set this instance's own.
        key_type = self.host_key.sshType()
        factory.publicKeys = {key_type: self.host_key.public()}
        factory.privateKeys = {key_type: self.host_key}
        return factory

    def startService(self):
        super().startService()
        try:
            self._listening = self._reactor.listenTCP(
                self.port, self.factory(), interface=self.interface
            )
        except CannotListenError as error:
            # Checked at build time; something took the port since.
            raise ConfigError(
                f"SSH manhole (MANHOLE_INTERFACE, MANHOLE_PORT): cannot listen on "
                f"{self.interface} port {self.port}: {error.socketError}"
            ) from None
        self.port = self._listening.getHost().port
        _log.info(
            "SSH manhole listening on {interface} port {port}; host key "
            "{fingerprint}; accepting the keys in {authorized_keys}",
            interface=self.interface,
            port=self.port,
            fingerprint=fingerprint(self.host_key),
            authorized_keys=self.authorized_keys,
        )

    def stopService(self):
        super().stopService()
        if self._listening is None:
            return None
        listening, self._listening = self._listening, None
        return listening.stopListening()


def build_manhole(options, reactor, root, counts):
    """
    The manhole service C{options} ask for.

    @raise ConfigError: no usable authorized-keys file, a bad host key file,
        a port that is taken or is the gRPC port, an interface that is not
        an address of this machine.
    """
    from jackd.tap import check_port_free

    port, interface = options["manhole-port"], options["manhole-interface"]
    if port != 0 and port == options["grpc-port"]:
        raise ConfigError(
            f"SSH manhole (MANHOLE_PORT): port {port} is GRPC_PORT too; give the "
            "manhole a port of its own"
        )
    check_authorized_keys(options["manhole-authorized-keys"])
    host_key = load_host_key(options["manhole-host-key"])
    try:
        check_port_free(port, interface)
    except ConfigError as error:
        raise ConfigError(f"SSH manhole (MANHOLE_INTERFACE, MANHOLE_PORT): {error}") from None
    return ManholeService(
        options["manhole-port"],
        options["manhole-interface"],
        options["manhole-authorized-keys"],
        host_key,
        namespace(root, options, counts, reactor),
        reactor,
    )


_session_class = None


def _terminal_session():
    """
    Conch's C{TerminalSession}, made to end cleanly at the end of the
    client's input (Conch raises C{NotImplementedError}: a critical traceback
    in Jack's log) and without a terminal (Conch fails with a traceback),
    and to follow the terminal's size (Conch raises again).  Built on first
    use: importing ``twisted.conch.manhole_ssh`` installs the default reactor.
    """
    global _session_class
    if _session_class is None:
        from twisted.conch.manhole_ssh import TerminalSession

        class ManholeSession(TerminalSession):
            _channel = None
            _terminal = None

            def getPty(self, term, windowSize, attrs):
                # ssh -tt without a terminal of its own asks for 0 x 0.
                self.height, self.width = windowSize[0] or 24, windowSize[1] or 80

            def openShell(self, proto):
                self._channel = proto.session
                if not hasattr(self, "width"):
                    # Answer the shell request first (clients wait for it).
                    from twisted.internet import reactor

                    reactor.callLater(0, self._refuse)
                    return
                self._terminal = self.chainedProtocolFactory()
                self.transportFactory(
                    proto, self._terminal, IConchUser(self.original), self.width, self.height
                )

            def _refuse(self):
                _log.info("Manhole session refused: the client asked for no terminal")
                self._channel.write(
                    b"The Jack manhole needs a terminal: ssh -t (ssh -tt when "
                    b"piping statements in).\r\n"
                )
                self._channel.conn.sendRequest(
                    self._channel, b"exit-status", struct.pack(">L", 1)
                )
                SSHChannel.loseConnection(self._channel)

            def windowChanged(self, newWindowSize):
                self.height, self.width = newWindowSize[0] or 24, newWindowSize[1] or 80
                if self._terminal is not None:
                    self._terminal.terminalProtocol.terminalSize(self.width, self.height)

            def eofReceived(self):
                # No more input: exit status 0 (what a script piping into
                # ssh -tt gets), and close the channel once what was written
                # to it has been sent (SSHSession.loseConnection would not wait).
                if self._channel is not None:
                    _log.info("Manhole session ended: end of the client's input")
                    self._channel.conn.sendRequest(
                        self._channel, b"exit-status", struct.pack(">L", 0)
                    )
                    SSHChannel.loseConnection(self._channel)

        _session_class = ManholeSession
    return _session_class

