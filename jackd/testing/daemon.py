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
import signal as _signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


class JackProcess:
    """
    One ``twistd -n jack --grpc-port PORT *args`` subprocess.

    @ivar port: the gRPC port (a free one unless given).
    @ivar directory: the process's working directory (a fresh temporary
        directory, removed by L{stop}).
    @ivar process: the L{subprocess.Popen}, once started.
    """

    def __init__(self, args=(), env=None, port=None):
        self.args = list(args)
        self.env = dict(env or {})
        self.port = free_port() if port is None else port
        self.directory = None
        self.process = None
        self._log_path = None
        self._log_text = None
        self._channels = []

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

    def start(self, timeout=30):
        """
        Start the daemon and block until its health service answers SERVING
        for the server as a whole ("").

        @raise AssertionError: with the daemon's log when it exits or is not
            SERVING within C{timeout} seconds; the process is killed first.
        """
        if self.process is not None:
            raise RuntimeError("JackProcess.start called twice")
        self.directory = tempfile.mkdtemp(prefix="jackd-")
        self._log_path = os.path.join(self.directory, "jackd.log")
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
        last = "no answer yet"
        with grpc.insecure_channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.process.poll() is not None:
                    self._fail(f"exited with status {self.process.returncode}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fail(f"not SERVING after {timeout}s ({last})")
                try:
                    response = health.Check(
                        health_pb2.HealthCheckRequest(service=""),
                        timeout=min(1.0, remaining),
                    )
                except grpc.RpcError as e:
                    last = f"{e.code().name}: {e.details()}"
                else:
                    if response.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                    last = health_pb2.HealthCheckResponse.ServingStatus.Name(
                        response.status
                    )
                time.sleep(0.05)

    def _fail(self, why):
        self.stop(timeout=0)
        raise AssertionError(
            f"jackd ({' '.join(self.command[3:])}) {why}; its log:\n{self.log()}"
        )

    def channel(self):
        """
        A new synchronous gRPC channel to the daemon; L{stop} closes it.
        """
        channel = grpc.insecure_channel(self.address)
        self._channels.append(channel)
        return channel

    def signal(self, sig):
        """
        Send C{sig} (e.g. C{signal.SIGHUP}) to the daemon.
        """
        self.process.send_signal(sig)

    def kill(self, timeout=30):
        """
        Kill the daemon with SIGKILL (kill -9: no clean stop, nothing
        flushed) and wait for it to be gone.

        @return: its returncode (-9).
        """
        self.process.kill()
        return self.process.wait(timeout)

    def wait(self, timeout):
        """
        Wait for the daemon to exit.

        @return: its returncode (negative for a signal: -15 for SIGTERM).
        @raise subprocess.TimeoutExpired: if it is still running after
            C{timeout} seconds.
        """
        return self.process.wait(timeout)

    def stop(self, timeout=30):
        """
        Close the channels, send SIGTERM and wait for the daemon to exit,
        killing it with SIGKILL after C{timeout} seconds.  Safe to call more
        than once, and before L{start}.

        @return: the returncode (-15 after a clean stop on SIGTERM, -9 when it
            had to be killed), or C{None} if it was never started.
        """
        while self._channels:
            self._channels.pop().close()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(_signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_text is None:
            self._log_text = self._read_log()
            shutil.rmtree(self.directory, ignore_errors=True)
        return self.process.returncode

    def log(self):
        """
        Everything the daemon wrote to stdout and stderr so far.
        """
        if self._log_text is not None:
            return self._log_text
        return self._read_log()

    def _read_log(self):
        if self._log_path is None:
            return ""
        with open(self._log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
