"""
Timeliness of scheduled jobs, measured on the real path: ``twistd jack``
(``JackProcess``) with a schedule store, publishing to Google's Pub/Sub
emulator; jobs are pulled back from the topic, and each one's lateness is
its Pub/Sub ``publish_time`` minus its ``run_at`` (the emulator stamps
milliseconds, so lateness is in whole milliseconds and "early" means at
least 1 ms before run_at).

    python -m bench.schedule                       # sqlite and postgres
    python -m bench.schedule --store memory --burst 2000
    python -m bench.schedule --output bench/results/schedule.json

Two phases per store:

- ``steady``: C{--steady} jobs due at random instants over C{--spread}
  seconds, a few seconds ahead (normal load): how late each is published
  (goal: never early, within 1 s).
- ``burst``: C{--burst} jobs (10,000 by default) due in the same second,
  while a client keeps calling ``Enqueue`` (jobs due now) at C{--rate} per
  second from before the burst is due until it has drained: how long the
  burst takes to drain, and the latency of those Enqueue calls before and
  during the drain (goal: the drain does not block enqueue calls).

Needs gcloud (the emulator) and, for ``postgres``, the PostgreSQL server
of the tests (``JACK_TEST_POSTGRES``, default 127.0.0.1:5432 user postgres
database test; the run uses a schema of its own and drops it).
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

SECOND = 1_000_000_000
HIGH = "high"


def percentiles(values):
    """p50, p99, max and min of C{values} (milliseconds), or C{None}s."""
    if not values:
        return {"count": 0, "min": None, "p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(p):
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    return {
        "count": len(ordered), "min": ordered[0], "p50": at(50), "p99": at(99),
        "max": ordered[-1], "mean": round(statistics.fmean(ordered), 3),
    }


class Run:
    """One Jack with one schedule store, its topic and subscription."""

    def __init__(self, emulator, store_args, label):
        from jackd.testing.daemon import JackProcess
        from jackd.testing.pubsub import unique

        self.emulator = emulator
        self.label = label
        prefix = unique(f"bench-schedule-{label}")
        self.topics = {q: f"{prefix}-{q}" for q in ("immediate", "high", "medium", "low")}
        self.subscription = f"{self.topics[HIGH]}-sub"
        emulator.create_topics(list(self.topics.values()))
        emulator.create_subscription(self.topics[HIGH], self.subscription)
        args = ["--queue-backend", "pubsub", "--pubsub-project", emulator.project]
        for queue, topic in self.topics.items():
            args += [f"--pubsub-topic-{queue}", topic]
        self.jack = JackProcess(args=args + store_args, env=emulator.env())

    def start(self):
        from jack import admin_pb2, admin_pb2_grpc, job_pb2, jobs_pb2_grpc

        self.jack.start()
        channel = self.jack.channel()
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        self.producer_id = admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name=f"bench {self.label}"), timeout=10
        ).producer.producer_id
        admin.CreateJobType(admin_pb2.CreateJobTypeRequest(
            producer_id=self.producer_id, name="timed", queue=job_pb2.QUEUE_HIGH,
        ), timeout=10)
        self.jobs = jobs_pb2_grpc.BackgroundJobsStub(channel)

    def request(self, run_at_ns=None, payload=b"x" * 100):
        from google.protobuf.timestamp_pb2 import Timestamp

        from jack import jobs_pb2

        request = jobs_pb2.EnqueueRequest(
            producer_id=self.producer_id, job_type="timed", payload=payload
        )
        if run_at_ns is not None:
            stamp = Timestamp()
            stamp.FromNanoseconds(run_at_ns)
            request.run_at.CopyFrom(stamp)
        return request

    def schedule(self, run_ats):
        """Enqueue one job per run_at, in bulks of 1000: C{{job_id: run_at}}."""
        from jack import jobs_pb2

        scheduled = {}
        for start in range(0, len(run_ats), 1000):
            chunk = run_ats[start:start + 1000]
            response = self.jobs.EnqueueBulk(
                jobs_pb2.EnqueueBulkRequest(jobs=[self.request(at) for at in chunk]),
                timeout=60,
            )
            for result, at in zip(response.results, chunk):
                if result.code:
                    raise RuntimeError(f"refused: {result.error}")
                scheduled[result.job_id] = at
        return scheduled

    def pull(self, count, timeout):
        """C{{job_id: publish_time_ms}} of C{count} messages (first copy)."""
        published = {}
        duplicates = 0
        for _, message in self.emulator.pull(self.subscription, count, timeout):
            job_id = message.message.attributes["job_id"]
            ms = int(message.message.publish_time.timestamp() * 1000)
            if job_id in published:
                duplicates += 1
            published.setdefault(job_id, ms)
        return published, duplicates


def lateness(scheduled, published):
    """Lateness (ms) of each scheduled job that was published."""
    return [published[job_id] - run_at // 1_000_000
            for job_id, run_at in scheduled.items() if job_id in published]


def steady(run, count, spread):
    """C{count} jobs due at random instants over C{spread} s, from 3 s ahead."""
    start = time.time_ns() + 3 * SECOND
    run_ats = [start + random.randrange(int(spread * SECOND)) for _ in range(count)]
    scheduled = run.schedule(run_ats)
    published, duplicates = run.pull(count, timeout=spread + 60)
    late = lateness(scheduled, published)
    return {
        "jobs": count,
        "published": len(published),
        "duplicates": duplicates,
        "early": sum(1 for value in late if value < 0),
        "over_1s": sum(1 for value in late if value > 1000),
        "lateness_ms": percentiles(late),
    }


def burst(run, count, rate):
    """
    C{count} jobs due in one second, while Enqueue calls go on at C{rate}/s.
    """
    import grpc

    due = time.time_ns() + 5 * SECOND + (count // 2000) * SECOND
    enqueue_started = time.time()
    run_ats = [due + random.randrange(SECOND) for _ in range(count)]
    scheduled = run.schedule(run_ats)
    enqueue_s = time.time() - enqueue_started
    if time.time_ns() > due - SECOND:
        raise RuntimeError("scheduling the burst took too long: raise the lead time")

    calls = []  # (sent_at_ns, latency_ms, ok)
    stop = threading.Event()

    def caller():
        interval = 1 / rate
        next_at = time.monotonic()
        while not stop.is_set():
            next_at += interval
            sent = time.time_ns()
            try:
                run.jobs.Enqueue(run.request(), timeout=10)
                ok = True
            except grpc.RpcError:
                ok = False
            calls.append((sent, (time.time_ns() - sent) / 1e6, ok))
            time.sleep(max(0.0, next_at - time.monotonic()))

    # Calls start 2 s before the burst is due: the baseline.
    while time.time_ns() < due - 2 * SECOND:
        time.sleep(0.01)
    thread = threading.Thread(target=caller, daemon=True)
    thread.start()
    published, duplicates = {}, 0
    try:
        # The subscription gets the burst and the callers' jobs.
        everything, duplicates = run.pull(count, timeout=120)
        published = {k: v for k, v in everything.items() if k in scheduled}
        deadline = time.monotonic() + 60
        while len(published) < count and time.monotonic() < deadline:
            more, extra = run.pull(count - len(published), timeout=30)
            duplicates += extra
            published.update({k: v for k, v in more.items() if k in scheduled})
    finally:
        stop.set()
        thread.join()
    late = lateness(scheduled, published)
    drained_ms = (max(published.values()) - due // 1_000_000) if published else None
    drain_end_ns = due + (drained_ms or 0) * 1_000_000
    before = [ms for sent, ms, ok in calls if sent < due]
    during = [ms for sent, ms, ok in calls if due <= sent <= drain_end_ns]
    return {
        "jobs": count,
        "scheduling_s": round(enqueue_s, 3),
        "published": len(published),
        "duplicates": duplicates,
        "early": sum(1 for value in late if value < 0),
        "drained_after_due_window_start_ms": drained_ms,
        "lateness_ms": percentiles(late),
        "enqueue_rate_per_s": rate,
        "enqueue_failed": sum(1 for _, _, ok in calls if not ok),
        "enqueue_ms_before_burst": percentiles(before),
        "enqueue_ms_during_drain": percentiles(during),
    }


def postgres_schema():
    """A fresh schema on the test server: (conninfo, drop)."""
    from psycopg.conninfo import make_conninfo

    from jackd.testing.postgres import SERVER, connect

    schema = f"jack_bench_{os.getpid()}"
    with connect() as admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")

    def drop():
        with connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return make_conninfo(SERVER, options=f"-c search_path={schema}"), drop


def store_args(store, directory):
    """The Jack options for C{store}, and what to call when done."""
    if store == "memory":
        return [], lambda: None
    if store == "sqlite":
        return ["--schedule-store", "sqlite", "--schedule-db",
                os.path.join(directory, "schedule.db")], lambda: None
    conninfo, drop = postgres_schema()
    return ["--schedule-store", "postgres", "--schedule-db", conninfo], drop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", action="append", choices=["memory", "sqlite", "postgres"],
                        help="schedule store to measure (repeatable; default sqlite, postgres)")
    parser.add_argument("--steady", type=int, default=2000, help="jobs in the steady phase")
    parser.add_argument("--spread", type=float, default=10.0,
                        help="seconds the steady jobs are spread over")
    parser.add_argument("--burst", type=int, default=10_000, help="jobs due in one second")
    parser.add_argument("--rate", type=float, default=50.0,
                        help="Enqueue calls per second during the burst")
    parser.add_argument("--jack-arg", action="append", default=[],
                        help="an extra twistd jack option, such as "
                             "--jack-arg=--schedule-batch-size=100 (repeatable)")
    parser.add_argument("--output", help="also write the results as JSON to this file")
    options = parser.parse_args(argv)

    from jackd.testing.pubsub import PubSubEmulator

    if not PubSubEmulator.available():
        sys.exit("bench.schedule: gcloud (the Pub/Sub emulator) is not installed")
    emulator = PubSubEmulator()
    emulator.start()
    results = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "jack_args": options.jack_arg, "stores": {}}
    directory = tempfile.mkdtemp(prefix="bench-schedule-")
    try:
        for store in options.store or ["sqlite", "postgres"]:
            args, done = store_args(store, directory)
            run = Run(emulator, args + options.jack_arg, store)
            try:
                run.start()
                print(f"[{store}] steady: {options.steady} jobs over {options.spread}s",
                      flush=True)
                result = {"steady": steady(run, options.steady, options.spread)}
                print(json.dumps(result["steady"]), flush=True)
                print(f"[{store}] burst: {options.burst} jobs due in one second",
                      flush=True)
                result["burst"] = burst(run, options.burst, options.rate)
                print(json.dumps(result["burst"]), flush=True)
                results["stores"][store] = result
            finally:
                run.jack.stop()
                done()
    finally:
        emulator.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results, indent=2))
    if options.output:
        with open(options.output, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
