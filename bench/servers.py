"""
What the load is pointed at, started and stopped by the runner: the echo
servers, Jack itself (``twistd -n jack`` in its default configuration, as
``jackd.testing.daemon.JackProcess`` starts it), a Redis server of the run's
own, the local RabbitMQ, and Google's Pub/Sub emulator.  These calls block.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from jackd.testing.daemon import JackProcess, free_port
from jackd.testing.services import end_process

PYTHON = sys.executable
# bench/servers.py -> the checkout holding bench/ and jackd/.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ServerError(Exception):
    """A server did not start."""


def cpu_seconds(pid) -> float | None:
    """User + system CPU seconds process C{pid} used so far (from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(command, cpus):
    """C{command} under ``taskset -c CPUS`` when C{cpus} are given."""
    if not cpus:
        return list(command)
    return ["taskset", "-c", ",".join(str(cpu) for cpu in cpus), *command]


def environment(extra=None) -> dict:
    """This environment with the checkout first on PYTHONPATH."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = ROOT + (os.pathsep + path if path else "")
    env.update(extra or {})
    return env


def wait_for_port(port, timeout, process=None, what="server"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerError(f"{what} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"{what} not listening on port {port} after {timeout}s")


class EchoServer:
    """``python -m bench.echo --model MODEL``, pinned to C{cpus}."""

    def __init__(self, model, cpus, threads=8):
        self.model = model
        self.cpus = cpus
        self.threads = threads
        self.port = free_port()
        self.process = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=30):
        self.process = subprocess.Popen(
            pinned(
                [PYTHON, "-m", "bench.echo", "--model", self.model,
                 "--port", str(self.port), "--threads", str(self.threads)],
                self.cpus,
            ),
            cwd=ROOT,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if line != "READY":
            self.stop()
            raise ServerError(f"echo server ({self.model}) did not start: {line!r}")
        wait_for_port(self.port, timeout, self.process, f"echo server ({self.model})")

    def stop(self):
        if self.process is None:
            return
        end_process(self.process)
        self.process.stdout.close()
        self.process = None

    def setup(self):
        """The echo needs no producer: any ids will do."""
        return "prod_echo", "echo"


class BenchJack(JackProcess):
    """
    ``twistd -n jack`` in its default configuration (only the port and,
    for Pub/Sub, the backend options are given), pinned to C{cpus}.
    """

    def __init__(self, cpus, args=(), env=None):
        super().__init__(args=args, env=env)
        self.cpus = cpus

    @property
    def command(self):
        return pinned(super().command, self.cpus)

    @property
    def pid(self):
        return self.process.pid

    def setup(self, queue="QUEUE_HIGH"):
        """
        Register a producer and a job type over the AdminService.

        @return: C{(producer_id, job_type)}.
        """
        from jack import admin_pb2, admin_pb2_grpc
        from jack.job_pb2 import Queue

        admin = admin_pb2_grpc.AdminServiceStub(self.channel())
        producer = admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name="bench"), timeout=10
        ).producer
        admin.CreateJobType(
            admin_pb2.CreateJobTypeRequest(
                producer_id=producer.producer_id,
                name="bench-job",
                queue=Queue.Value(queue),
            ),
            timeout=10,
        )
        return producer.producer_id, "bench-job"


class RedisServer:
    """
    A Redis server of the run's own (no persistence), pinned to C{cpus},
    so that nobody else's keys or FLUSHALL meet the benchmark's.
    """

    def __init__(self, cpus):
        self.cpus = cpus
        self.port = free_port()
        self.process = None
        self.directory = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self):
        return self.process.pid

    def start(self, timeout=15):
        self.directory = tempfile.mkdtemp(prefix="jack-bench-redis-")
        self.process = subprocess.Popen(
            pinned(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.directory],
                self.cpus,
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, timeout, self.process, "redis-server")

    def version(self) -> str:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True,
                             check=False)
        return out.stdout.strip()

    def flush(self):
        from redis import Redis

        with Redis.from_url(self.url) as client:
            client.flushall()

    def stop(self):
        if self.process is None:
            return
        end_process(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


class RabbitMQ:
    """The local RabbitMQ (not started here, so not pinned)."""

    def __init__(self, url="amqp://guest:guest@127.0.0.1:5672//"):
        self.url = url

    def available(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=1):
                return True
        except OSError:
            return False

    def delete_queue(self, queue):
        from kombu import Connection

        with Connection(self.url) as connection:
            connection.default_channel.queue_delete(queue)


def pubsub_backend_built() -> bool:
    """Whether this version of Jack has the Pub/Sub backend."""
    from jackd.tap import BACKENDS

    return BACKENDS.get("pubsub") is not None
