"""
The runner: ``python -m bench`` (``make bench``).

For each repetition it runs every variant in turn (A B C ... A B C ...), so
that slow drifts of a shared machine hit all of them alike.  Each variant
gets a fresh server pinned to the server core and load processes pinned to
the other cores; after a warm-up it measures the closed-loop maximum, then
the open-loop latency at a fraction (50%) of the grpc.aio echo's maximum
measured earlier in the same repetition (bulk calls and other queues: of
their own maximum).  Results go to ``bench/results/<date>-<host>.json``
with a Markdown table and a PNG chart beside it.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time

from bench import report, stats
from bench.servers import (
    PYTHON,
    ROOT,
    BenchJack,
    EchoServer,
    RabbitMQ,
    RedisServer,
    ServerError,
    cpu_seconds,
    environment,
    pinned,
    pubsub_backend_built,
)
from bench.variants import BY_NAME, SMOKE, VARIANTS

PUBSUB_PROJECT = "jack-bench"
# The load processes get this long to start before a phase's t0.
PHASE_LEAD = 0.3


class Skip(Exception):
    """A variant cannot run on this machine; the message says why."""


def choose_cpus(pin=True):
    """
    @return: C{(server_cpus, load_cpus)}: the first allowed CPU for the
        server and the rest for the load; both empty (no pinning) with
        fewer than two CPUs or C{pin} false.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return [], []
    return cpus[:1], cpus[1:]


def busy_jiffies():
    """Jiffies all CPUs spent busy so far (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle


def process_tree(pid):
    """C{pid} and all its descendants (from /proc)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as f:
                    todo.extend(int(child) for child in f.read().split())
            except OSError:
                pass
    return pids


def pids_named(name):
    """Processes whose command name is C{name} (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def total_cpu(pids):
    values = [cpu_seconds(pid) for pid in pids]
    return sum(v for v in values if v is not None)


class Snapshot:
    """
    CPU counters at one moment: the server's, the load's, the helpers'
    (the Pub/Sub emulator) and the whole machine's.
    """

    def __init__(self, server_pids, load_pids, helper_pids=()):
        self.server = total_cpu(server_pids)
        self.load = total_cpu(load_pids)
        self.helper = total_cpu(helper_pids)
        self.busy = busy_jiffies() / os.sysconf("SC_CLK_TCK")
        self.time = time.monotonic()


class LoadProcesses:
    """The load processes of one variant, driven phase by phase."""

    def __init__(self, specs, cpus):
        self.processes = []
        for spec in specs:
            self.processes.append(
                subprocess.Popen(
                    pinned([PYTHON, "-m", "bench.load", json.dumps(spec)], cpus),
                    cwd=ROOT,
                    env=environment(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for process in self.processes:
            line = process.stdout.readline().strip()
            if line != "READY":
                self.close()
                raise ServerError(f"a load process did not start: {line!r}")

    @property
    def pids(self):
        return [process.pid for process in self.processes]

    def phase(self, message, server_pids, helper_pids=()):
        """
        Run one phase in every load process at once.

        @return: the phase's combined result (see L{combine}).
        """
        message = dict(message, t0=time.time() + PHASE_LEAD)
        for process in self.processes:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        start = time.monotonic() + PHASE_LEAD + message["warmup"]
        time.sleep(max(0.0, start - time.monotonic()))
        helper_pids = [pid for parent in helper_pids for pid in process_tree(parent)]
        before = Snapshot(server_pids, self.pids, helper_pids)
        time.sleep(max(0.0, start + message["duration"] - time.monotonic()))
        after = Snapshot(server_pids, self.pids, helper_pids)
        results = []
        for process in self.processes:
            line = process.stdout.readline()
            if not line.startswith("RESULT "):
                raise ServerError(f"a load process ended without a result: {line!r}")
            results.append(json.loads(line[len("RESULT "):]))
        return combine(results, before, after)

    def close(self):
        for process in self.processes:
            if process.poll() is None:
                try:
                    process.stdin.write('{"phase": "quit"}\n')
                    process.stdin.flush()
                except OSError:
                    pass
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        self.processes = []


def combine(results, before, after) -> dict:
    """
    One phase's result from its load processes' results and the CPU
    snapshots taken at the start and end of the measured window.
    """
    duration = results[0]["duration"]
    calls = sum(r["calls"] for r in results)
    jobs = sum(r["jobs"] for r in results)
    errors = sum(r["errors"] for r in results)
    samples = {}
    for r in results:
        for message, count in r["error_samples"].items():
            samples[message] = samples.get(message, 0) + count
    latency = stats.merge(r["latency"] for r in results)
    lag = stats.merge(r["lag"] for r in results)
    elapsed = after.time - before.time
    server_cpu = after.server - before.server
    load_cpu = after.load - before.load
    helper_cpu = after.helper - before.helper
    busy = after.busy - before.busy
    client_cpu = [r["client_cpu"] for r in results if r["client_cpu"] is not None]
    combined = {
        "calls": calls,
        "jobs": jobs,
        "errors": errors,
        "error_samples": samples,
        "duration": duration,
        "calls_per_s": calls / duration,
        "jobs_per_s": jobs / duration,
        "server_cores": server_cpu / elapsed,
        "load_cores": load_cpu / elapsed,
        "client_cpu_s": sum(client_cpu) if client_cpu else None,
        "helper_cores": helper_cpu / elapsed,
        # Everything else the machine did meanwhile: other people's work
        # (and the local RabbitMQ beyond what is counted as the server).
        "other_cores": max(0.0, busy - server_cpu - load_cpu - helper_cpu) / elapsed,
        "server_cpu_us_per_call": server_cpu / calls * 1e6 if calls else None,
        "server_cpu_us_per_job": server_cpu / jobs * 1e6 if jobs else None,
        "latency": stats.summarize(latency),
        "latency_hist": stats.encode(latency),
        "lag": stats.summarize(lag),
        "valid": errors == 0 and calls > 0,
    }
    if "rate" in results[0]:
        combined["rate"] = sum(r["rate"] for r in results)
    if "concurrency" in results[0]:
        combined["concurrency"] = sum(r["concurrency"] for r in results)
    return combined


class Runner:
    """
    @param config: the parsed command line (see L{parser}).
    """

    def __init__(self, config, log=print):
        self.config = config
        self.log = log
        self.server_cpus, self.load_cpus = choose_cpus(not config.no_pin)
        self.redis = None
        self.rabbitmq = RabbitMQ(config.amqp_url)
        self.emulator = None
        self.skipped = {}  # variant name -> reason it could not run
        self.notes = []

    # Shared servers, started once per run.

    def _redis(self):
        if self.redis is None:
            if not RedisServer.available():
                raise Skip("redis-server is not installed")
            self.redis = RedisServer(self.server_cpus)
            self.redis.start()
        return self.redis

    def _emulator(self):
        if self.emulator is None:
            from jackd.testing.pubsub import PubSubEmulator

            if not pubsub_backend_built():
                raise Skip("this version of Jack has no Pub/Sub backend yet")
            if not PubSubEmulator.available():
                raise Skip("gcloud (with the Pub/Sub emulator) is not installed")
            self.emulator = PubSubEmulator(PUBSUB_PROJECT)
            self.emulator.start()
        return self.emulator

    def close(self):
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    # One variant.

    def _target(self, variant):
        """
        Start what C{variant} loads.

        @return: C{(server, spec, server_pids, cleanup)}.
        """
        base = {"payload_bytes": self.config.payload_bytes}
        if variant.server.startswith("echo-"):
            server = EchoServer(variant.server[len("echo-"):], self.server_cpus,
                                self.config.threads)
            server.start()
            return server, self._grpc_spec(variant, server, base), [server.pid], server.stop
        if variant.server == "jack-noop":
            server = BenchJack(self.server_cpus)
        elif variant.server == "jack-pubsub":
            emulator = self._emulator()
            server = BenchJack(
                self.server_cpus,
                args=["--queue-backend", "pubsub", "--pubsub-project", emulator.project,
                      "--pubsub-create-topics", "true"],
                env=emulator.env(),
            )
        else:
            return self._queue_target(variant, base)
        server.start(timeout=60)
        try:
            spec = self._grpc_spec(variant, server, base)
        except Exception:
            server.stop()
            raise
        return server, spec, [server.pid], server.stop

    def _grpc_spec(self, variant, server, base):
        producer_id, job_type = server.setup()
        return dict(
            base,
            client="grpc",
            target=server.address,
            method=variant.method,
            bulk=variant.bulk,
            producer_id=producer_id,
            job_type=job_type,
            channels=self.config.channels,
        )

    def _queue_target(self, variant, base):
        queue = f"jack-bench-{os.getpid()}"
        if variant.server == "redis":
            redis = self._redis()
            redis.flush()
            url, pids, cleanup = redis.url, [redis.pid], redis.flush
        else:
            if not self.rabbitmq.available():
                raise Skip("RabbitMQ is not running on 127.0.0.1:5672")
            url, pids = self.rabbitmq.url, pids_named("beam.smp")
            def cleanup():
                self.rabbitmq.delete_queue(queue)
        if variant.client == "celery":
            spec = dict(base, client="celery", broker=url, queue=queue)
        else:
            spec = dict(base, client="rq", redis=url, queue=queue, bulk=variant.bulk)
        return None, spec, pids, cleanup

    def _helper_pids(self, variant):
        """Processes whose CPU is counted apart: the Pub/Sub emulator's."""
        if variant.server == "jack-pubsub" and self.emulator is not None:
            process = getattr(self.emulator, "_process", None)
            return [process.pid] if process is not None else []
        return []

    def _specs(self, variant, spec):
        """One spec per load process, the in-flight calls split between them."""
        cpus = max(1, len(self.load_cpus))
        count = cpus * (self.config.producers if spec["client"] != "grpc" else 1)
        if spec["client"] == "grpc":
            count = min(count, variant.concurrency)
        return [dict(spec) for _ in range(count)]

    def run_variant(self, variant, echo_max):
        """
        Measure C{variant} once: closed loop, then open loop.

        @param echo_max: the grpc.aio echo's closed-loop calls/s in this
            repetition, or C{None}.
        @return: C{{"closed": ..., "open": ...}} (C{open} may hold only a
            C{"skipped"} reason).
        """
        config = self.config
        _server, spec, server_pids, cleanup = self._target(variant)
        helpers = self._helper_pids(variant)
        load = None
        try:
            specs = self._specs(variant, spec)
            load = LoadProcesses(specs, self.load_cpus)
            closed = load.phase(
                {"phase": "closed", "warmup": config.warmup, "duration": config.duration,
                 "concurrency": max(1, variant.concurrency // len(specs))},
                server_pids,
                helpers,
            )
            del closed["latency_hist"]  # only the open loop's are merged
            basis = echo_max if variant.open_basis == "echo" and echo_max else None
            basis_name = "echo" if basis or variant.name == "echo-aio" else "own"
            if basis is None:
                basis = closed["calls_per_s"] if closed["valid"] else None
            if basis is None:
                opened = {"skipped": "the closed loop had no valid result"}
            else:
                rate = basis * config.open_fraction
                opened = load.phase(
                    {"phase": "open", "warmup": config.open_warmup,
                     "duration": config.duration, "rate": rate / len(specs)},
                    server_pids,
                    helpers,
                )
                opened["basis"] = basis_name
            return {"closed": closed, "open": opened}
        finally:
            if load is not None:
                load.close()
            cleanup()

    # The whole run.

    def run(self) -> dict:
        config = self.config
        names = [v.name for v in VARIANTS if v.name in config.variants]
        started = datetime.datetime.now(datetime.UTC)
        document = {
            "schema": 1,
            "started_at": started.isoformat(timespec="seconds"),
            "host": socket.gethostname(),
            "machine": machine_info(self.server_cpus, self.load_cpus),
            "config": {
                "reps": config.reps,
                "warmup_s": config.warmup,
                "open_warmup_s": config.open_warmup,
                "duration_s": config.duration,
                "open_fraction": config.open_fraction,
                "payload_bytes": config.payload_bytes,
                "channels": config.channels,
                "threads": config.threads,
                "producers_per_load_cpu": config.producers,
                "variants": names,
            },
            "variants": {
                name: {"label": BY_NAME[name].label, "group": BY_NAME[name].group,
                       "bulk": BY_NAME[name].bulk,
                       "concurrency": BY_NAME[name].concurrency, "reps": []}
                for name in names
            },
        }
        try:
            for rep in range(config.reps):
                echo_max = None
                for name in names:
                    if name in self.skipped:
                        continue
                    variant = BY_NAME[name]
                    self.log(f"rep {rep + 1}/{config.reps}: {name} ...")
                    try:
                        outcome = self.run_variant(variant, echo_max)
                    except Skip as reason:
                        self.skipped[name] = str(reason)
                        self.log(f"  skipped: {reason}")
                        continue
                    except Exception as error:  # noqa: BLE001 -- recorded; the run goes on
                        outcome = {"failed": f"{type(error).__name__}: {error}"}
                        self.log(f"  failed: {outcome['failed']}")
                    outcome["rep"] = rep
                    document["variants"][name]["reps"].append(outcome)
                    self.log("  " + report.one_line(outcome))
                    if name == "echo-aio" and outcome.get("closed", {}).get("valid"):
                        echo_max = outcome["closed"]["calls_per_s"]
        finally:
            self.close()
        for name, reason in self.skipped.items():
            document["variants"][name]["skipped"] = reason
        finished = datetime.datetime.now(datetime.UTC)
        document["finished_at"] = finished.isoformat(timespec="seconds")
        document["machine"]["loadavg_end"] = os.getloadavg()
        report.analyse(document)
        return document


def _version(distribution):
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def machine_info(server_cpus, load_cpus) -> dict:
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    status = _git("status", "--porcelain")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "pinned": bool(server_cpus),
        "server_cpus": server_cpus,
        "load_cpus": load_cpus,
        "loadavg_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "commit": _git("rev-parse", "HEAD"),
        "tree_modified": bool(status) if status is not None else None,
        "versions": {
            name: _version(name)
            for name in ("jackd", "grpcio", "protobuf", "twisted", "celery", "kombu",
                         "rq", "redis", "hdrhistogram")
        },
    }


def parser():
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Jack's enqueue path against gRPC ceilings, Celery and RQ, "
                    "interleaved in one run.",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    p.add_argument("--warmup", type=float, default=3.0,
                   help="seconds of load before each closed-loop window (default 3)")
    p.add_argument("--open-warmup", type=float, default=1.0,
                   help="seconds of load before each open-loop window (default 1)")
    p.add_argument("--duration", type=float, default=6.0,
                   help="seconds each window measures (default 6)")
    p.add_argument("--open-fraction", type=float, default=0.5,
                   help="open-loop rate as a fraction of the echo's maximum (default 0.5)")
    p.add_argument("--payload-bytes", type=int, default=100,
                   help="payload of every job, for every system (default 100)")
    p.add_argument("--channels", type=int, default=4,
                   help="gRPC connections per load process (default 4)")
    p.add_argument("--threads", type=int, default=8,
                   help="thread pool of the threaded echo servers (default 8)")
    p.add_argument("--producers", type=int, default=1,
                   help="Celery/RQ producer processes per load CPU (default 1)")
    p.add_argument("--variants", default=",".join(v.name for v in VARIANTS),
                   help="comma-separated variants to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated variants not to run")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672//",
                   help="the RabbitMQ for Celery (default: local guest)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the server and the load to separate CPUs")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                   help="directory for the results (default bench/results)")
    p.add_argument("--name", default=None,
                   help="file name stem of the results (default <date>-<host>)")
    p.add_argument("--smoke", action="store_true",
                   help="a few seconds per variant, one repetition, no emulator: "
                        "checks that the harness works; its numbers mean nothing")
    return p


def configure(argv=None):
    config = parser().parse_args(argv)
    if config.smoke:
        config.reps = 1
        config.warmup = config.open_warmup = 0.3
        config.duration = 0.7
        if "--variants" not in (argv if argv is not None else sys.argv):
            config.variants = ",".join(SMOKE)
    variants = [v for v in config.variants.split(",") if v]
    unknown = [v for v in variants if v not in BY_NAME]
    if unknown:
        parser().error(f"unknown variants: {', '.join(unknown)} "
                       f"(known: {', '.join(BY_NAME)})")
    skip = {v for v in config.skip.split(",") if v}
    config.variants = [v for v in variants if v not in skip]
    return config


def main(argv=None):
    config = configure(argv)
    runner = Runner(config, log=lambda text: print(text, file=sys.stderr, flush=True))
    document = runner.run()
    stem = config.name or "{}-{}".format(
        document["started_at"][:10], document["host"]
    )
    paths = report.write(document, config.out, stem)
    print(report.markdown(document))
    for path in paths:
        print(f"wrote {path}", file=sys.stderr)
    if not document["summary"]["complete"]:
        print("some variants gave no result (see above)", file=sys.stderr)
