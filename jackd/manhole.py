"""
The SSH manhole: a Python prompt inside the running daemon, for operators.

Off unless ``MANHOLE_PORT`` is set.  It listens on 127.0.0.1 unless
``MANHOLE_INTERFACE`` says otherwise and accepts only the public keys in the
authorized-keys file ``MANHOLE_AUTHORIZED_KEYS`` names, for any user name
(the file is read again at each login, so removing a key takes effect
without a restart).  There is no password and no telnet manhole.

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
import struct

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.application.service import Service
from twisted.conch.checkers import IAuthorizedKeysDB, SSHPublicKeyChecker
from twisted.conch.ssh import keys
from twisted.cred.portal import Portal
from twisted.logger import Logger
from zope.interface import implementer

from jackd.errors import ConfigError
from jackd.stats import Stats

_log = Logger()


def read_authorized_keys(path):
    """
    The public keys in the OpenSSH authorized-keys file at C{path}: one key
    a line (``ssh-ed25519 AAAA... comment``).  Blank lines, comments and
    lines that are not a public key are skipped (key options such as
    ``from="..."`` in front of a key are not supported: such a line is
    skipped too).

    @raise OSError: the file cannot be read.
    """
    found = []
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(b"#"):
                continue
            try:
                found.append(keys.Key.fromString(line, type="public_openssh"))
            except (keys.BadKeyError, ValueError, IndexError, struct.error):
                continue
    return found


def check_authorized_keys(path):
    """
    @raise ConfigError: C{path} is empty, cannot be read or holds no
        usable public key.
    """
    where = "MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys)"
    if not path:
        raise ConfigError(
            f"MANHOLE_PORT needs {where}: the file of the public keys the SSH "
            "manhole accepts"
        )
    try:
        found = read_authorized_keys(path)
    except OSError as error:
        raise ConfigError(f"{where} {path}: cannot read it: {error.strerror}") from None
    if not found:
        raise ConfigError(f"{where} {path}: holds no usable public key")


@implementer(IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """
    The keys of one authorized-keys file, for any user name, read again at
    each login.  A file that has become unreadable accepts nobody.
    """

    def __init__(self, path):
        self.path = path

    def getAuthorizedKeys(self, username):
        try:
            return read_authorized_keys(self.path)
        except OSError as error:
            _log.error(
                "Manhole login refused: cannot read {path}: {error}",
                path=self.path,
                error=error.strerror,
            )
            return []


def _new_host_key():
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


def load_host_key(path):
    """
    The manhole's SSH host key: the private key in C{path}, written there
    first (Ed25519, mode 0600) when the file does not exist; a new key when
    C{path} is empty.

    @raise ConfigError: the file cannot be read or written, or holds no
        unencrypted private key.
    """
    where = "MANHOLE_HOST_KEY (--manhole-host-key)"
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
        realm.chainedProtocolFactory = chainedProtocolFactory(self.namespace)
        checker = SSHPublicKeyChecker(AuthorizedKeysFile(self.authorized_keys))
        factory = ConchFactory(Portal(realm, [checker]))
        # Class-level dicts on ConchFactory: set this instance's own.
        key_type = self.host_key.sshType()
        factory.publicKeys = {key_type: self.host_key.public()}
        factory.privateKeys = {key_type: self.host_key}
        return factory

    def startService(self):
        super().startService()
        self._listening = self._reactor.listenTCP(
            self.port, self.factory(), interface=self.interface
        )
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

    @raise ConfigError: no usable authorized-keys file, a bad host key file.
    """
    from jackd.tap import check_port_free

    check_authorized_keys(options["manhole-authorized-keys"])
    host_key = load_host_key(options["manhole-host-key"])
    try:
        check_port_free(options["manhole-port"])
    except ConfigError as error:
        raise ConfigError(f"SSH manhole (MANHOLE_PORT): {error}") from None
    return ManholeService(
        options["manhole-port"],
        options["manhole-interface"],
        options["manhole-authorized-keys"],
        host_key,
        namespace(root, options, counts, reactor),
        reactor,
    )
