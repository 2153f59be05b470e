"""
The SSH manhole: its settings and start errors, the live objects and
C{stats()} in its namespace, and a real SSH client (paramiko) logging in to a
running ``twistd jack`` with a test key, evaluating expressions and reading
the answers.
"""

import ast
import atexit
import base64
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import time
from collections import Counter

import grpc
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from google.protobuf.timestamp_pb2 import Timestamp
from twisted.conch.ssh import keys
from twisted.internet import task
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jack import admin_pb2, admin_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from jack.job_pb2 import Job, Queue
from jackd.errors import ConfigError
from jackd.manhole import (
    USER_KEY_ALGORITHMS,
    AuthorizedKeysFile,
    ManholeService,
    ManholeTransport,
    check_authorized_keys,
    fingerprint,
    load_host_key,
    read_authorized_keys,
)
from jackd.scheduler import Scheduler
from jackd.scheduler.memory import MemoryScheduleStore
from jackd.stats import Stats
from jackd.storage.memory import MemoryConfigStore
from jackd.tap import Options, build_service
from jackd.testing.backends import RecordingBackend
from jackd.testing.daemon import JackProcess, free_port, run_twistd


def new_key(kind="ed25519"):
    """A new private key (a ``twisted.conch.ssh.keys.Key``): ed25519, rsa or ecdsa."""
    if kind == "rsa":
        return keys.Key(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if kind == "ecdsa":
        return keys.Key(ec.generate_private_key(ec.SECP256R1()))
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


def _ssh_string(data):
    return struct.pack(">L", len(data)) + data


# Lines that cryptography refuses with exceptions other than BadKeyError: a
# point not on the curve (the line of a reviewer's typo: NotImplementedError)
# and an unknown curve (UnsupportedAlgorithm).
BAD_POINT_LINE = (
    b"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBFc2nLngE8yG"
    b"cBM7lAlmJCEsoX7HPJfjHK/o1nZZaOFJ575RLZycKv4raEXMw/lU4PFjFJFiE859OnDaYfqarBQg= typo\n"
)
UNKNOWN_CURVE_LINE = b"ecdsa-sha2-nistp999 " + base64.b64encode(
    _ssh_string(b"ecdsa-sha2-nistp999") + _ssh_string(b"nistp999")
    + _ssh_string(b"\x04" + b"\x01" * 64)
) + b" unknown\n"


def warnings(observer):
    """The text of the warnings C{observer} saw."""
    return [formatEvent(event) for event in observer if event["log_level"] == LogLevel.warn]


def public_line(key, comment="test"):
    return key.public().toString("openssh", comment=comment) + b"\n"


class KeyFiles:
    """A temporary directory of key files, removed by L{remove}."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="jack-manhole-")

    def path(self, name):
        return os.path.join(self.directory, name)

    def write(self, name, data, mode=0o600):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def private(self, name, key):
        """Write C{key} as an OpenSSH private key file; return its path."""
        return self.write(name, key.toString("openssh"))

    def remove(self):
        shutil.rmtree(self.directory, ignore_errors=True)


def options(argv=(), environ=None):
    parsed = Options(environ=environ or {})
    parsed.parseOptions(["--grpc-port", "0", *argv])
    return parsed


class SettingsTests(SynchronousTestCase):
    def test_defaults(self):
        """The manhole is off by default; on, it listens on 127.0.0.1."""
        parsed = options()
        self.assertEqual(
            {k: v for k, v in parsed.items() if k.startswith("manhole-")},
            {"manhole-port": None, "manhole-interface": "127.0.0.1",
             "manhole-authorized-keys": "", "manhole-host-key": ""},
        )

    def test_environment(self):
        """Each manhole setting is read from its environment variable."""
        parsed = options(environ={
            "MANHOLE_PORT": "2222", "MANHOLE_INTERFACE": "::1",
            "MANHOLE_AUTHORIZED_KEYS": "/etc/jack/keys", "MANHOLE_HOST_KEY": "/var/jack/host",
        })
        self.assertEqual(
            [parsed[k] for k in ("manhole-port", "manhole-interface",
                                 "manhole-authorized-keys", "manhole-host-key")],
            [2222, "::1", "/etc/jack/keys", "/var/jack/host"],
        )

    def test_bad_values(self):
        """A port or an address that does not parse is a usage error naming it."""
        for argv, environ, message in [
            (["--manhole-port", "ssh"], {}, "--manhole-port: 'ssh' is not a TCP port"),
            ([], {"MANHOLE_INTERFACE": "localhost"},
             "MANHOLE_INTERFACE: 'localhost' is not an IP address"),
        ]:
            with self.assertRaises(usage.UsageError) as caught:
                options(argv, environ)
            self.assertIn(message, str(caught.exception))


class BuildTests(SynchronousTestCase):
    def setUp(self):
        self.files = KeyFiles()
        self.addCleanup(self.files.remove)
        self.key = new_key()
        self.authorized = self.files.write("authorized_keys", public_line(self.key))

    def build(self, *argv):
        from twisted.internet import reactor

        return build_service(options(argv), reactor)

    def test_off_by_default(self):
        """Without a manhole port the tree has no manhole."""
        self.assertNotIn("manhole", [child.name for child in self.build()])

    def test_last_child(self):
        """
        With a port and a key file, the manhole is the last child (started
        last, stopped first), on 127.0.0.1, with the live objects in its
        namespace.
        """
        root = self.build("--manhole-port", "0", "--manhole-authorized-keys", self.authorized)
        self.assertEqual(
            [child.name for child in root],
            ["storage", "backend", "scheduler", "grpc", "health", "manhole"],
        )
        manhole = root.getServiceNamed("manhole")
        self.assertIsInstance(manhole, ManholeService)
        self.assertEqual(manhole.interface, "127.0.0.1")
        namespace = manhole.namespace
        self.assertEqual(
            sorted(namespace),
            ["backend", "config", "reactor", "root", "scheduler", "stats", "storage"],
        )
        self.assertIs(namespace["root"], root)
        for name in ("storage", "backend", "scheduler"):
            self.assertIs(namespace[name], root.getServiceNamed(name))
        self.assertEqual(namespace["config"]["manhole-authorized-keys"], self.authorized)

    def test_needs_authorized_keys(self):
        """A manhole port without an authorized-keys file is a ConfigError saying so."""
        error = self.assertRaises(ConfigError, self.build, "--manhole-port", "0")
        self.assertEqual(
            str(error),
            "MANHOLE_PORT needs MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys): "
            "the file of the public keys the SSH manhole accepts",
        )

    def test_unreadable_authorized_keys(self):
        """An authorized-keys file that does not exist is a ConfigError naming it."""
        missing = self.files.path("nope")
        error = self.assertRaises(
            ConfigError, self.build, "--manhole-port", "0", "--manhole-authorized-keys", missing
        )
        self.assertEqual(
            str(error),
            f"MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys) {missing}: cannot "
            "read it: No such file or directory",
        )

    def test_no_usable_key(self):
        """An authorized-keys file with no public key in it is a ConfigError."""
        path = self.files.write(
            "junk", b"# comment\n\nnot a key\nssh-ed25519 AAAA\n" + self.key.toString("openssh")
        )
        error = self.assertRaises(
            ConfigError, self.build, "--manhole-port", "0", "--manhole-authorized-keys", path
        )
        self.assertEqual(
            str(error),
            f"MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys) {path}: holds no "
            "usable public key",
        )

    def test_port_in_use(self):
        """A manhole port something listens on is a ConfigError naming the manhole."""
        import socket

        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            error = self.assertRaises(
                ConfigError, self.build, "--manhole-port", str(port),
                "--manhole-authorized-keys", self.authorized,
            )
        self.assertEqual(
            str(error),
            f"SSH manhole (MANHOLE_INTERFACE, MANHOLE_PORT): cannot listen on 127.0.0.1 "
            f"port {port}: already in use",
        )

    def test_interface_not_here(self):
        """
        A manhole interface that is not an address of this machine is a
        ConfigError at build time (not a traceback once gRPC serves).
        """
        error = self.assertRaises(
            ConfigError, self.build, "--manhole-port", "0", "--manhole-interface",
            "192.0.2.1", "--manhole-authorized-keys", self.authorized,
        )
        self.assertEqual(
            str(error),
            "SSH manhole (MANHOLE_INTERFACE, MANHOLE_PORT): cannot listen on 192.0.2.1 "
            "port 0: not an address of this machine",
        )

    def test_grpc_port(self):
        """The gRPC port as the manhole port is a ConfigError saying so."""
        error = self.assertRaises(
            ConfigError, self.build, "--grpc-port", "50999", "--manhole-port", "50999",
            "--manhole-authorized-keys", self.authorized,
        )
        self.assertEqual(
            str(error),
            "SSH manhole (MANHOLE_PORT): port 50999 is GRPC_PORT too; give the manhole a "
            "port of its own",
        )

    def test_read_authorized_keys(self):
        """
        Only the public key lines count; comments and blank lines are
        skipped, and junk and private keys are skipped with a warning naming
        the line.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        other = new_key()
        path = self.files.write("mixed", b"".join([
            b"# operators\n", public_line(self.key), b"\n", b"from=\"10.0.0.1\" x\n",
            b"ssh-rsa !!!\n", public_line(other, "other"),
        ]))
        self.assertEqual(read_authorized_keys(path), [self.key.public(), other.public()])
        seen = warnings(observer)
        self.assertEqual(len(seen), 2, seen)
        self.assertTrue(seen[0].startswith(f"{path} line 4: skipped, not a usable public key ("))
        self.assertTrue(seen[1].startswith(f"{path} line 5: skipped, not a usable public key ("))

    def test_bad_lines_lock_nobody_out(self):
        """
        A line that cryptography cannot load (a point off its curve, an
        unknown curve) is skipped with a warning naming its line: the start
        goes on and the keys on the other lines still log in.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        rsa_key, ecdsa_key = new_key("rsa"), new_key("ecdsa")
        path = self.files.write("authorized_keys", b"".join([
            public_line(self.key), BAD_POINT_LINE, UNKNOWN_CURVE_LINE,
            public_line(rsa_key), public_line(ecdsa_key),
        ]))
        check_authorized_keys(path)
        self.build("--manhole-port", "0", "--manhole-authorized-keys", path)
        self.assertEqual(
            AuthorizedKeysFile(path).getAuthorizedKeys(b"operator"),
            [self.key.public(), rsa_key.public(), ecdsa_key.public()],
        )
        seen = warnings(observer)
        self.assertIn(
            f"{path} line 2: skipped, not a usable public key (NotImplementedError: "
            "Need uncompressed point)", seen,
        )
        self.assertTrue(any(
            line.startswith(f"{path} line 3: skipped, not a usable public key "
                            "(UnsupportedAlgorithm: ")
            for line in seen
        ), seen)

    def test_writable_authorized_keys(self):
        """
        An authorized-keys file that group or others can write, or in a
        directory they can write (not sticky), is refused at start and at
        login, as OpenSSH's StrictModes does; a sticky directory is fine.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        where = "MANHOLE_AUTHORIZED_KEYS (--manhole-authorized-keys)"
        for mode in (0o620, 0o602, 0o666):
            os.chmod(self.authorized, mode)
            error = self.assertRaises(ConfigError, check_authorized_keys, self.authorized)
            self.assertEqual(
                str(error),
                f"{where} {self.authorized}: refused, group or others can write it "
                f"(chmod go-w {self.authorized})",
            )
            self.assertEqual(AuthorizedKeysFile(self.authorized).getAuthorizedKeys(b"op"), [])
        self.assertIn(
            f"Manhole login refused: {self.authorized}: group or others can write it "
            f"(chmod go-w {self.authorized})",
            [formatEvent(event) for event in observer],
        )
        os.chmod(self.authorized, 0o644)
        check_authorized_keys(self.authorized)
        os.chmod(self.files.directory, 0o777)
        self.addCleanup(os.chmod, self.files.directory, 0o700)
        error = self.assertRaises(ConfigError, check_authorized_keys, self.authorized)
        self.assertIn(f"group or others can write its directory {self.files.directory}",
                      str(error))
        self.assertEqual(AuthorizedKeysFile(self.authorized).getAuthorizedKeys(b"op"), [])
        os.chmod(self.files.directory, 0o1777)
        check_authorized_keys(self.authorized)
        self.assertEqual(
            AuthorizedKeysFile(self.authorized).getAuthorizedKeys(b"op"), [self.key.public()]
        )

    def test_advertised_signature_algorithms(self):
        """
        The manhole's SSH transport advertises (RFC 8308 server-sig-algs) the
        algorithms of Ed25519, ECDSA and RSA user keys, not only those of its
        host key.
        """
        sent = []
        transport = ManholeTransport()
        transport._peerSupportsExtensions = True
        transport.sendPacket = lambda kind, payload: sent.append(payload)
        transport.sendExtInfo([(b"server-sig-algs", b"ssh-ed25519"), (b"other", b"x")])
        [payload] = sent
        self.assertEqual(
            payload,
            struct.pack(">L", 2) + _ssh_string(b"server-sig-algs")
            + _ssh_string(b",".join(USER_KEY_ALGORITHMS))
            + _ssh_string(b"other") + _ssh_string(b"x"),
        )
        self.assertIn(b"rsa-sha2-512", USER_KEY_ALGORITHMS)


class HostKeyTests(SynchronousTestCase):
    def setUp(self):
        self.files = KeyFiles()
        self.addCleanup(self.files.remove)

    def test_new_each_start(self):
        """Without a host key file, each start makes a new private Ed25519 key."""
        first, second = load_host_key(""), load_host_key("")
        self.assertFalse(first.isPublic())
        self.assertEqual(first.sshType(), b"ssh-ed25519")
        self.assertNotEqual(first.public(), second.public())

    def test_created_then_kept(self):
        """A host key file that does not exist is created (mode 0600), then reused."""
        path = self.files.path("host_key")
        first = load_host_key(path)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(load_host_key(path), first)

    def test_bad_files(self):
        """A host key file that is not a private key, or cannot be read, is a ConfigError."""
        key = new_key()
        where = "MANHOLE_HOST_KEY (--manhole-host-key)"
        cases = [
            (self.files.write("junk", b"junk"), "not an SSH private key"),
            (self.files.write("public", public_line(key)), "holds a public key"),
            (self.files.directory, "Is a directory"),
            (self.files.path("no/such/dir/key"), "cannot create it: No such file or directory"),
        ]
        for path, message in cases:
            error = self.assertRaises(ConfigError, load_host_key, path)
            self.assertTrue(str(error).startswith(f"{where} {path}: "), str(error))
            self.assertIn(message, str(error))

    def test_file_modes(self):
        """
        A host key file that group or others can write is refused; one they
        can read is used, with a warning.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        key = new_key()
        path = self.files.private("host_key", key)
        os.chmod(path, 0o660)
        error = self.assertRaises(ConfigError, load_host_key, path)
        self.assertEqual(
            str(error),
            f"MANHOLE_HOST_KEY (--manhole-host-key) {path}: refused, group or others can "
            f"write it (chmod go-w {path})",
        )
        os.chmod(path, 0o644)
        self.assertEqual(load_host_key(path), key)
        self.assertEqual(warnings(observer), [(
            f"MANHOLE_HOST_KEY (--manhole-host-key) {path}: group or others can read it "
            f"(chmod go-r {path}); whoever can read it can pose as this manhole"
        )])

    def test_fingerprint(self):
        """Fingerprints read as OpenSSH prints them: SHA256: and unpadded base64."""
        self.assertRegex(fingerprint(new_key()), r"^SHA256:[A-Za-z0-9+/]{43}$")


class StatsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)
        self.counts = Counter()
        self.backend = RecordingBackend()
        self.store = MemoryConfigStore()
        self.scheduler = Scheduler(MemoryScheduleStore(), self.backend, self.clock)
        self.stats = Stats(self.counts, self.scheduler, self.backend, self.store)

    def test_counts_and_health(self):
        """
        stats() fires with the jobs accepted, the rejected ones by code, the
        jobs the scheduler holds and the health of backend and storage.
        """
        self.counts.update({"OK": 5, "NOT_FOUND": 2, "INVALID_ARGUMENT": 1})
        job = Job(job_id="job_1", producer_id="prod_1", job_type="t", queue=Queue.QUEUE_LOW)
        job.run_at.FromSeconds(1_700_000_600)
        self.successResultOf(self.scheduler.schedule([job]))
        self.assertEqual(self.successResultOf(self.stats()), {
            "jobs_accepted": 5,
            "jobs_rejected": {"INVALID_ARGUMENT": 1, "NOT_FOUND": 2},
            "scheduler": self.successResultOf(self.scheduler.stats()),
            "backend_healthy": True,
            "storage_healthy": True,
        })
        self.assertEqual(self.successResultOf(self.stats())["scheduler"]["held"], 1)

    def test_unhealthy(self):
        """A check that answers False or fails reports the part unhealthy."""
        self.backend.healthy = False

        def broken():
            raise RuntimeError("storage broke")

        self.store.check = broken
        result = self.successResultOf(self.stats())
        self.assertEqual((result["backend_healthy"], result["storage_healthy"]), (False, False))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ListenTests(TestCase):
    def test_loopback_by_default(self):
        """Started with its default interface the manhole listens on 127.0.0.1 only."""
        from twisted.internet import reactor

        root = build_service(options([
            "--manhole-port", "0", "--manhole-authorized-keys", self._keys(),
        ]), reactor)
        manhole = root.getServiceNamed("manhole")
        manhole.startService()
        self.addCleanup(manhole.stopService)
        self.assertEqual(manhole._listening.getHost().host, "127.0.0.1")
        self.assertNotEqual(manhole.port, 0)

    def test_port_taken_since_build(self):
        """
        A port taken between the build-time check and the start is a
        ConfigError (Jack logs it as one line), not a listenTCP traceback.
        """
        import socket

        from twisted.internet import reactor

        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            manhole = ManholeService(port, "127.0.0.1", self._keys(), new_key(), {}, reactor)
            error = self.assertRaises(ConfigError, manhole.startService)
        self.assertTrue(str(error).startswith(
            f"SSH manhole (MANHOLE_INTERFACE, MANHOLE_PORT): cannot listen on 127.0.0.1 "
            f"port {port}: "
        ), str(error))
        self.assertNotIn("\n", str(error))

    def _keys(self):
        files = KeyFiles()
        self.addCleanup(files.remove)
        return files.write("authorized_keys", public_line(new_key()))


class StartErrorTests(TestCase):
    def test_one_line(self):
        """`twistd jack` with a manhole port and no key file exits 1 with one line."""
        result = run_twistd(["jack", "--grpc-port", "0", "--manhole-port", str(free_port())])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [(
            "twistd jack: MANHOLE_PORT needs MANHOLE_AUTHORIZED_KEYS "
            "(--manhole-authorized-keys): the file of the public keys the SSH manhole accepts"
        )])

    def test_grpc_port_one_line(self):
        """
        `twistd jack` with the gRPC port as manhole port exits 1 with one line
        before serving anything (not a critical traceback once gRPC serves).
        """
        files = KeyFiles()
        self.addCleanup(files.remove)
        authorized = files.write("authorized_keys", public_line(new_key()))
        port = str(free_port())
        result = run_twistd([
            "jack", "--grpc-port", port, "--manhole-port", port,
            "--manhole-authorized-keys", authorized,
        ])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [(
            f"twistd jack: SSH manhole (MANHOLE_PORT): port {port} is GRPC_PORT too; give "
            "the manhole a port of its own"
        )])
        self.assertNotIn("gRPC", result.stdout)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[c>=]")


class Manhole:
    """
    A running ``twistd jack`` with a manhole, shared by this module's
    end-to-end tests: C{allowed} is in its authorized-keys file, C{other}
    never is, C{later} is added by a test.
    """

    def __init__(self):
        self.files = KeyFiles()
        self.allowed, self.other, self.later = new_key(), new_key(), new_key()
        self.authorized = self.files.write("authorized_keys", public_line(self.allowed))
        self.port = free_port()
        self.jack = JackProcess(args=[
            "--manhole-port", str(self.port), "--manhole-authorized-keys", self.authorized,
        ])

    def start(self):
        self.jack.start()

    def stop(self):
        self.jack.stop()
        self.files.remove()


_manhole = None


def manhole():
    global _manhole
    if _manhole is None:
        running = Manhole()
        atexit.register(running.stop)
        running.start()
        _manhole = running
    return _manhole


class Session:
    """
    A paramiko SSH session with a pty and a shell: the manhole's prompt
    (without C{terminal}: a shell without a pty).
    """

    def __init__(self, port, key, terminal=True):
        import paramiko

        self.client = paramiko.SSHClient()
        self.client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        self.client.connect(
            "127.0.0.1", port, username="operator", pkey=_paramiko_key(key),
            look_for_keys=False, allow_agent=False,
            timeout=20, banner_timeout=20, auth_timeout=20,
        )
        if terminal:
            self.channel = self.client.invoke_shell(width=200)
        else:
            self.channel = self.client.get_transport().open_session(timeout=20)
            self.channel.invoke_shell()
        self.channel.settimeout(20)
        self._seen = ""
        self._calls = 0

    def rest(self):
        """What the manhole sends until it closes the session, as text."""
        while True:
            data = self.channel.recv(65536)
            if not data:
                return self._seen
            self._seen += _ANSI.sub("", data.decode("utf-8", "replace"))

    def host_key_fingerprint(self):
        return self.client.get_transport().get_remote_server_key().fingerprint

    def run(self, statement):
        """Type C{statement} and Enter."""
        self.channel.send((statement + "\r").encode("utf-8"))

    def evaluate(self, expression, timeout=20):
        """The repr of C{expression} evaluated at the prompt, as text."""
        self._calls += 1
        n = self._calls
        self.run(f"print('<<<{n}', repr({expression}), '{n}>>>')")
        pattern = re.compile(rf"<<<{n} (.*?) {n}>>>", re.DOTALL)
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self._seen)
            if match:
                return match.group(1).replace("\r", "")
            if time.monotonic() > deadline:
                raise AssertionError(f"no answer to {expression!r}; screen: {self._seen!r}")
            if self.channel.recv_ready():
                self._seen += _ANSI.sub("", self.channel.recv(65536).decode("utf-8", "replace"))
            else:
                time.sleep(0.02)

    def close(self):
        self.client.close()


def _paramiko_key(key):
    import io

    import paramiko

    kind = {"Ed25519": paramiko.Ed25519Key, "RSA": paramiko.RSAKey, "EC": paramiko.ECDSAKey}
    return kind[key.type()].from_private_key(io.StringIO(key.toString("openssh").decode()))


class ManholeSshTests(TestCase):
    """A real SSH client against the manhole of a running ``twistd jack``."""

    def setUp(self):
        try:
            import paramiko  # noqa: F401
        except ImportError:
            self.skipTest("paramiko is not installed (pip install paramiko)")
        self.manhole = manhole()

    def session(self, key=None):
        session = Session(self.manhole.port, key or self.manhole.allowed)
        self.addCleanup(session.close)
        return session

    def test_evaluate(self):
        """An operator logged in with an authorized key evaluates Python in the live daemon."""
        session = self.session()
        self.assertEqual(session.evaluate("6 * 7"), "42")
        self.assertEqual(session.evaluate("config['grpc-port']"), str(self.manhole.jack.port))
        self.assertEqual(
            session.evaluate("[service.name for service in root]"),
            "['storage', 'backend', 'scheduler', 'grpc', 'health', 'manhole']",
        )
        self.assertEqual(session.evaluate("type(backend).__name__"), "'NoopBackend'")
        self.assertEqual(session.evaluate("storage is root.getServiceNamed('storage')"), "True")
        self.assertEqual(session.evaluate("bool(scheduler.running)"), "True")

    def test_stats(self):
        """stats() counts the jobs accepted and rejected by code and the held ones."""
        session = self.session()
        before = self.stats(session)
        channel = self.manhole.jack.channel()
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        producer = admin.CreateProducer(admin_pb2.CreateProducerRequest(name="Stats")).producer
        admin.CreateJobType(admin_pb2.CreateJobTypeRequest(
            producer_id=producer.producer_id, name="count-me"
        ))
        jobs = jobs_pb2_grpc.BackgroundJobsStub(channel)

        def job(**fields):
            fields.setdefault("producer_id", producer.producer_id)
            fields.setdefault("job_type", "count-me")
            return jobs_pb2.EnqueueRequest(**fields)

        jobs.Enqueue(job())
        later = Timestamp()
        later.FromSeconds(int(time.time()) + 3600)
        with self.assertRaises(grpc.RpcError):
            jobs.Enqueue(job(producer_id="prod_nobody"))
        jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=[
            job(), job(run_at=later), job(trace_id="t" * 2000), job(job_type="unknown"),
        ]))
        with self.assertRaises(grpc.RpcError):  # refused as a whole: counts once
            jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=[job()] * 1001))
        after = self.stats(session)
        self.assertEqual(after["jobs_accepted"] - before["jobs_accepted"], 3)
        rejected = Counter(after["jobs_rejected"])
        rejected.subtract(before["jobs_rejected"])
        self.assertEqual(+rejected, Counter({"NOT_FOUND": 2, "INVALID_ARGUMENT": 2}))
        self.assertEqual(after["scheduler"]["held"] - before["scheduler"]["held"], 1)
        self.assertEqual((after["backend_healthy"], after["storage_healthy"]), (True, True))

    def stats(self, session):
        """What stats() fires with, read at the prompt."""
        session.run("_fired = []; stats().addCallback(_fired.append)")
        deadline = time.monotonic() + 20
        while True:
            answer = session.evaluate("_fired[0] if _fired else None")
            if answer != "None":
                return ast.literal_eval(answer)
            self.assertLess(time.monotonic(), deadline, "stats() did not fire")
            time.sleep(0.1)

    def test_host_key_logged(self):
        """The daemon logs the fingerprint of the host key the client is shown."""
        session = self.session()
        shown = session.host_key_fingerprint()
        self.assertIn(
            f"SSH manhole listening on 127.0.0.1 port {self.manhole.port}; host key {shown}",
            self.manhole.jack.log(),
        )

    def test_wrong_key_refused(self):
        """A key that is not in the authorized-keys file is refused."""
        import paramiko

        with self.assertRaises(paramiko.AuthenticationException):
            Session(self.manhole.port, self.manhole.other)

    def test_public_key_only(self):
        """The manhole offers public-key login only: no password, no keyboard-interactive."""
        import paramiko

        transport = paramiko.Transport(("127.0.0.1", self.manhole.port))
        self.addCleanup(transport.close)
        transport.start_client(timeout=20)
        with self.assertRaises(paramiko.BadAuthenticationType) as caught:
            transport.auth_password("operator", "secret")
        self.assertEqual(caught.exception.allowed_types, ["publickey"])

    def authorize(self, key):
        with open(self.manhole.authorized, "ab") as f:
            f.write(public_line(key, key.type()))

    def test_rsa_and_ecdsa_keys(self):
        """
        RSA (signing with rsa-sha2-256/512) and ECDSA keys in the
        authorized-keys file log in too, not only Ed25519 ones like the host
        key.
        """
        for kind in ("rsa", "ecdsa"):
            key = new_key(kind)
            self.authorize(key)
            self.assertEqual(self.session(key).evaluate("6 * 7"), "42", kind)

    def test_end_of_input(self):
        """
        The end of the client's input ends the session cleanly: what was
        typed ran, the session closes with exit status 0, and Jack logs no
        traceback (Conch's TerminalSession raised NotImplementedError).
        """
        session = self.session()
        session.run("print(6 * 7)")
        session.channel.shutdown_write()
        self.assertIn("42", session.rest())
        self.assertEqual(session.channel.recv_exit_status(), 0)
        log = self.manhole.jack.log()
        self.assertIn("Manhole session ended: end of the client's input", log)
        for text in ("eofReceived", "NotImplementedError"):
            self.assertFalse(text in log, f"{text} in Jack's log")

    def test_no_terminal(self):
        """A shell without a terminal is told that it needs one, exit status 1, no traceback."""
        session = Session(self.manhole.port, self.manhole.allowed, terminal=False)
        self.addCleanup(session.close)
        self.assertIn("The Jack manhole needs a terminal: ssh -t", session.rest())
        self.assertEqual(session.channel.recv_exit_status(), 1)
        self.assertFalse("while establishing session client" in self.manhole.jack.log(),
                         "a traceback in Jack's log")

    def test_window_change(self):
        """A resized terminal keeps working, and Jack logs no error about it."""
        session = self.session()
        session.channel.resize_pty(width=100, height=30)
        self.assertEqual(session.evaluate("1 + 2"), "3")
        self.assertFalse("Error changing window size" in self.manhole.jack.log(),
                         "a traceback in Jack's log")

    def test_openssh_script(self):
        """
        A script pipes statements into OpenSSH's `ssh -tt` with an RSA key:
        they run, and ssh exits 0 at the end of its input.
        """
        ssh = shutil.which("ssh")
        if ssh is None:
            self.skipTest("no OpenSSH client (apt-get install openssh-client)")
        files = KeyFiles()
        self.addCleanup(files.remove)
        key = new_key("rsa")
        self.authorize(key)
        identity = files.private("id_rsa", key)
        result = subprocess.run(
            [ssh, "-tt", "-F", "/dev/null", "-p", str(self.manhole.port), "-i", identity,
             "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "LogLevel=ERROR", "operator@127.0.0.1"],
            input=b"print('answer', 6 * 7)\r", capture_output=True, timeout=60, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(b"answer 42", result.stdout)

    def test_keys_read_at_login(self):
        """A key added to the authorized-keys file works at the next login, without a restart."""
        import paramiko

        with self.assertRaises(paramiko.AuthenticationException):
            Session(self.manhole.port, self.manhole.later)
        with open(self.manhole.authorized, "ab") as f:
            f.write(public_line(self.manhole.later, "later"))
        self.assertEqual(self.session(self.manhole.later).evaluate("1 + 1"), "2")
