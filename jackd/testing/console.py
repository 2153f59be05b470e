"""
Run ``twistd -n jack-console`` as a subprocess, the way an operator starts
it, for end-to-end tests::

    console = ConsoleProcess(jack.address, args=["--page-size", "3"])
    console.start()
    self.addCleanup(console.stop)
    urlopen(console.url + "producers")

These calls block; they are meant for tests.
"""

import http.client
import os
import shutil
import signal
import subprocess
import tempfile
import time

from jackd.testing.daemon import TWISTD, free_port, twistd_environment


class ConsoleProcess:
    """
    One ``twistd -n jack-console --console-port PORT --jack-addr ADDRESS``.

    @ivar port: the HTTP port (a free one).
    @ivar url: ``http://127.0.0.1:PORT/``.
    """

    def __init__(self, jack_address, args=()):
        self.jack_address = jack_address
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process = None
        self._directory = None
        self._log_path = None
        self._log_text = None

    @property
    def command(self):
        return [
            *TWISTD, "-n", "--pidfile=", "jack-console",
            "--console-port", str(self.port), "--jack-addr", self.jack_address,
            *self.args,
        ]

    def start(self, timeout=30):
        """
        Start the console and block until it serves its stylesheet (which
        needs no answer from Jack).

        @raise AssertionError: with its log, when it exits or does not answer
            within C{timeout} seconds.
        """
        self._directory = tempfile.mkdtemp(prefix="jack-console-")
        self._log_path = os.path.join(self._directory, "console.log")
        with open(self._log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self._directory,
                env=twistd_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self._fail(f"exited with status {self.process.returncode}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self._fail(f"not answering after {timeout}s")
            time.sleep(0.05)

    def _answers(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/static/console.css")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _fail(self, why):
        self.stop(timeout=0)
        raise AssertionError(f"jack-console {why}; its log:\n{self.log()}")

    def stop(self, timeout=30):
        """
        SIGTERM, then SIGKILL after C{timeout} seconds.  Safe to call twice.

        @return: the returncode, or C{None} if it never started.
        """
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_text is None:
            self._log_text = self._read_log()
            shutil.rmtree(self._directory, ignore_errors=True)
        return self.process.returncode

    def log(self):
        """What the console wrote to stdout and stderr so far."""
        if self._log_text is not None:
            return self._log_text
        return self._read_log()

    def _read_log(self):
        if self._log_path is None:
            return ""
        with open(self._log_path, "rb") as f:
            return f.read().decode("utf-8", errors="replace")
