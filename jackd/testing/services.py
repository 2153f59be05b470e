"""
Tests that need an outside server (an emulator, PostgreSQL) skip with a
reason when it is missing on a developer's machine, and fail instead when
C{JACK_REQUIRE_SERVICES} is set, as ``.ci/run`` does.
"""

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest


def end_process(process, timeout=15, group=False):
    """
    Send SIGTERM to C{process} (to its whole process group with C{group}:
    a launcher's children too), wait up to C{timeout} seconds for it to
    exit, then SIGKILL it.

    @return: its returncode (negative for a signal: -15 after SIGTERM).
    """

    def send(signum):
        try:
            if group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:
            pass

    # A group is signalled even when its leader has exited: a child may not have.
    if group or process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait()
    return process.returncode


def set_environ(testCase, name, value):
    """
    Set environment variable C{name} to C{value} (read by a client library
    when a client is made) until C{testCase} ends.

    @return: a function restoring the variable at once (harmless to call
        again; the test's cleanup calls it too).
    """
    previous = os.environ.get(name)
    os.environ[name] = value

    def restore():
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    testCase.addCleanup(restore)
    return restore


def services_required() -> bool:
    return os.environ.get("JACK_REQUIRE_SERVICES", "") not in ("", "0")


def missing(testCase, reason):
    """
    Skip C{testCase} for C{reason}, or fail it when C{JACK_REQUIRE_SERVICES}
    is set.
    """
    if services_required():
        testCase.fail(f"{reason} (JACK_REQUIRE_SERVICES is set)")
    raise SkipTest(reason)


class EmulatorError(Exception):
    """An emulator did not start."""


class EmulatorProcess:
    """
    One emulator process on 127.0.0.1, in a session of its own (so that
    L{stop} reaches its children too, such as the Java process gcloud
    starts).  Subclasses give C{name}, C{_command()} and C{_answers()}.
    C{stop()} then C{start()} restarts it on the same port.

    @ivar port: its port (a free one unless given).
    """

    name = "emulator"
    poll_interval = 0.05
    # Why a test cannot have one here (what is not installed).
    missing_reason = "the emulator is not installed"

    @staticmethod
    def available() -> bool:
        """Whether it can run on this machine."""
        return True

    @classmethod
    def require(cls, testCase):
        """
        Skip (or fail, under C{JACK_REQUIRE_SERVICES}) C{testCase} when it
        cannot run here.
        """
        if not cls.available():
            missing(testCase, cls.missing_reason)

    @classmethod
    def shared(cls, testCase):
        """
        The one of this class shared by every test of this run, started on
        first use and stopped when the run ends (L{require} first).
        """
        cls.require(testCase)
        if cls.__dict__.get("_shared") is None:  # each class its own
            server = cls()
            server.start()
            atexit.register(server.close)
            cls._shared = server
        return cls._shared

    def __init__(self, port=None):
        from jackd.testing.daemon import free_port

        self.port = port or free_port()
        self._process = None
        self._log = None

    def _command(self):
        """
        @return: the command line.
        @raise EmulatorError: the emulator is not installed.
        """
        raise NotImplementedError

    def _answers(self) -> bool:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, timeout=30.0):
        """Start it (unless running) and block until it answers."""
        if self._process is not None:
            return
        command = self._command()
        if self._log is None:
            # Read by output(), closed by close().
            self._log = tempfile.TemporaryFile()  # noqa: SIM115
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self.output()
                self._process = None
                raise EmulatorError(f"{self.name} exited: {output}")
            if self._answers():
                return
            time.sleep(self.poll_interval)
        self.stop()
        raise EmulatorError(f"{self.name} not ready after {timeout}s")

    def output(self) -> str:
        """The end of what it printed."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def stop(self):
        """Stop it (and its children); return once its port is closed."""
        process, self._process = self._process, None
        if process is None:
            return
        end_process(process, group=True)
        # A child may outlive the leader for a moment: wait for the port.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
            except OSError:
                break
            time.sleep(0.1)

    def close(self):
        """Stop it and close its log."""
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
