"""
Run the real daemon as a subprocess, the way an operator starts it.

`JackProcess` starts ``twistd -n jack`` with the working tree's code (so
``twisted/plugins/jack.py`` from this checkout is the plugin twistd finds),
waits until grpc.health.v1 says SERVING, and stops it with SIGTERM::

    jack = JackProcess(args=["--drain-delay", "0s"])
    jack.start()
    self.addCleanup(jack.stop)
    stub = jobs_pb2_grpc.BackgroundJobsStub(jack.channel())

These calls block; they are meant for end-to-end tests, not for code under
test.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jackd.testing.services import end_process

# jackd/testing/daemon.py -> the directory that holds jackd/ and twisted/plugins/.
REPO_ROOT = str(Path(__file__).resolve().parents[2])

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port():
    """
    A TCP port on 127.0.0.1 that nothing listened on a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def twistd_environment(env=None):
    """
    C{os.environ} with the repository root first on PYTHONPATH, updated with
    C{env}.
    """
    environ = dict(os.environ)
    path = environ.get("PYTHONPATH")
    environ["PYTHONPATH"] = REPO_ROOT + (os.pathsep + path if path else "")
    environ.update(env or {})
    return environ


def run_twistd(args, env=None, timeout=30):
    """
    Run ``twistd -n --pidfile= *args`` to completion in a fresh temporary
    directory, for tests of startup errors: C{run_twistd(["jack",
    "--grpc-port", "nope"])}.

    @return: a L{subprocess.CompletedProcess} with text C{stdout} and
        C{stderr}.
    @raise subprocess.TimeoutExpired: if it runs longer than C{timeout}
        seconds (the process is killed).
    """
    with tempfile.TemporaryDirectory(prefix="jackd-") as cwd:
        return subprocess.run(
            [*TWISTD, "-n", "--pidfile=", *args],
            cwd=cwd,
            env=twistd_environment(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class TwistdProcess:
    """
    One ``twistd -n`` subprocess in a fresh temporary directory, its output
    in a log file; subclasses give the C{command}, a C{name} for messages
    and C{_ready(timeout)}, which says whether it serves yet.

    @ivar directory: the process's working directory (a fresh temporary
        directory, removed by L{stop}).
    @ivar process: the L{subprocess.Popen}, once started.
    """

    name = "twistd"

    def __init__(self, args=(), env=None):
        self.args = list(args)
        self.env = dict(env or {})
        self.directory = None
        self.process = None
        self._log_path = None
        self._log_text = None

    @property
    def command(self):
        raise NotImplementedError

    def _ready(self, timeout):
        """
        @return: C{(True, None)} once it serves, else C{(False, why)}.
        """
        raise NotImplementedError

    def start(self, timeout=30):
        """
        Start the process and block until it serves (L{_ready}).

        @raise AssertionError: with the process's log when it exits or does
            not serve within C{timeout} seconds; the process is killed first.
        """
        if self.process is not None:
            raise RuntimeError(f"{type(self).__name__}.start called twice")
        self.directory = tempfile.mkdtemp(prefix=f"{self.name}-")
        self._log_path = os.path.join(self.directory, f"{self.name}.log")
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.directory,
                env=twistd_environment(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        why = "no answer yet"
        while True:
            if self.process.poll() is not None:
                self._fail(f"exited with status {self.process.returncode}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"not serving after {timeout}s ({why})")
            ready, why = self._ready(min(1.0, remaining))
            if ready:
                return
            time.sleep(0.05)

    def _fail(self, why):
        self.stop(timeout=0)
        raise AssertionError(
            f"{self.name} ({' '.join(self.command[3:])}) {why}; its log:\n{self.log()}"
        )

    def signal(self, sig):
        """
        Send C{sig} (e.g. C{signal.SIGHUP}) to the process.
        """
        self.process.send_signal(sig)

    def kill(self, timeout=30):
        """
        Kill the process with SIGKILL (kill -9: no clean stop, nothing
        flushed) and wait for it to be gone.

        @return: its returncode (-9).
        """
        self.process.kill()
        return self.process.wait(timeout)

    def wait(self, timeout):
        """
        Wait for the process to exit.

        @return: its returncode (negative for a signal: -15 for SIGTERM).
        @raise subprocess.TimeoutExpired: if it is still running after
            C{timeout} seconds.
        """
        return self.process.wait(timeout)

    def stop(self, timeout=30):
        """
        Send SIGTERM and wait for the process to exit, killing it with
        SIGKILL after C{timeout} seconds.  Safe to call more than once, and
        before L{start}.

        @return: the returncode (-15 after a clean stop on SIGTERM, -9 when it
            had to be killed), or C{None} if it was never started.
        """
        if self.process is None:
            return None
        end_process(self.process, timeout)
        if self._log_text is None:
            self._log_text = self._read_log()
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode

    def log(self):
        """
        Everything the process wrote to stdout and stderr so far.
        """
        if self._log_text is not None:
            return self._log_text
        return self._read_log()

    def _read_log(self):
        if self._log_path is None:
            return ""
        with open(self._log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")


class JackProcess(TwistdProcess):
    """
    One ``twistd -n jack --grpc-port PORT *args`` subprocess, serving once
    its health service answers SERVING for the server as a whole ("").

    @ivar port: the gRPC port (a free one unless given).
    """

    name = "jackd"

    def __init__(self, args=(), env=None, port=None):
        super().__init__(args, env)
        self.port = free_port() if port is None else port
        self._channels = []
        self._health = None

    @property
    def address(self):
        """
        ``127.0.0.1:PORT``, for a gRPC channel.
        """
        return f"127.0.0.1:{self.port}"

    @property
    def command(self):
        return [
            *TWISTD, "-n", "--pidfile=", "jack",
            "--grpc-port", str(self.port), *self.args,
        ]

    def _ready(self, timeout):
        if self._health is None:
            self._health = health_pb2_grpc.HealthStub(self.channel())
        try:
            response = self._health.Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as e:
            return False, f"{e.code().name}: {e.details()}"
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return True, None
        return False, health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def channel(self):
        """
        A new synchronous gRPC channel to the daemon; L{stop} closes it.
        """
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def stop(self, timeout=30):
        """
        Close the channels, then stop as L{TwistdProcess.stop}.
        """
        while self._channels:
            self._channels.pop().close()
        self._health = None
        return super().stop(timeout)
