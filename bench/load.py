"""
A load process: ``python -m bench.load SPEC`` (SPEC is JSON).  It never
runs in the server's process; the runner starts one or more of them pinned
to the load cores and drives them phase by phase over stdin/stdout:

    load process -> READY                       connected, warmed up its client
    runner       -> {"phase": "closed", "t0": ..., "warmup": ..., "duration": ...}
    load process -> RESULT {...}
    runner       -> {"phase": "open", ..., "rate": ...}
    load process -> RESULT {...}
    runner       -> {"phase": "quit"}

C{t0} is a wall-clock time (``time.time()``) shared by every load process of
a run; the measured window is C{[t0 + warmup, t0 + warmup + duration)}.

- closed: C{concurrency} callers each send their next call as soon as the
  last one answered; the result counts calls answered inside the window.
- open: calls are sent at a fixed C{rate} whatever happens to the earlier
  ones, and each latency is measured from the call's intended send time
  (so a stalled server or a late client shows up in the latency instead of
  being hidden: no coordinated omission).

Clients: ``grpc`` (grpc.aio, Jack's ``Enqueue`` / ``EnqueueBulk`` or the echo
servers answering the same method), ``celery`` (``apply_async``) and ``rq``
(``enqueue``, or ``enqueue_many`` of C{bulk} jobs, which RQ pipelines).
"""

import asyncio
import json
import sys
import time

from bench import stats

CALL_TIMEOUT = 10.0
# Open loop: calls in flight beyond this are not sent but counted as errors.
MAX_IN_FLIGHT = 20_000
# Kinds of error messages a result keeps, to say what went wrong.
ERROR_SAMPLES = 5


class Window:
    """The timing of one phase, on this process's monotonic clock."""

    def __init__(self, message):
        offset = time.monotonic() - time.time()
        self.t0 = message["t0"] + offset
        self.start = self.t0 + message["warmup"]
        self.end = self.start + message["duration"]
        self.duration = message["duration"]

    def inside(self, t) -> bool:
        return self.start <= t < self.end


class Tally:
    """What one phase measured."""

    def __init__(self):
        self.calls = 0
        self.jobs = 0
        self.errors = 0
        self.samples = {}
        self.latency = stats.new_histogram()
        self.lag = stats.new_histogram()  # open loop: send time - intended time
        self.cpu_start = None
        self.cpu_end = None

    def error(self, message):
        self.errors += 1
        if len(self.samples) < ERROR_SAMPLES or message in self.samples:
            self.samples[message] = self.samples.get(message, 0) + 1

    def cpu_mark_start(self):
        if self.cpu_start is None:
            self.cpu_start = time.process_time()

    def cpu_mark_end(self):
        if self.cpu_end is None:
            self.cpu_end = time.process_time()

    def result(self, window, **extra) -> dict:
        cpu = None
        if self.cpu_start is not None and self.cpu_end is not None:
            cpu = self.cpu_end - self.cpu_start
        return {
            "calls": self.calls,
            "jobs": self.jobs,
            "errors": self.errors,
            "error_samples": self.samples,
            "duration": window.duration,
            "client_cpu": cpu,
            "latency": stats.encode(self.latency),
            "lag": stats.encode(self.lag),
            **extra,
        }


# gRPC (grpc.aio) ----------------------------------------------------------


def grpc_request(spec) -> bytes:
    """The encoded request every call of C{spec} sends."""
    from jack import jobs_pb2

    one = jobs_pb2.EnqueueRequest(
        producer_id=spec["producer_id"],
        job_type=spec["job_type"],
        payload=b"x" * spec["payload_bytes"],
    )
    if spec.get("bulk"):
        return jobs_pb2.EnqueueBulkRequest(jobs=[one] * spec["bulk"]).SerializeToString()
    return one.SerializeToString()


class GrpcClient:
    """
    Calls one unary method with a pre-encoded request over C{channels}
    connections (each its own TCP connection), checking every answer.
    """

    def __init__(self, spec):
        self.spec = spec
        self.request = grpc_request(spec)
        self.bulk = spec.get("bulk") or 0
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())

    async def _connect(self):
        import grpc

        self.channels = [
            grpc.aio.insecure_channel(
                self.spec["target"],
                options=[
                    ("grpc.use_local_subchannel_pool", 1),
                    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ],
            )
            for _ in range(self.spec.get("channels", 4))
        ]
        # Bytes in, bytes out: the load process spends nothing on protobuf
        # for unary calls.
        self.calls = [
            channel.unary_unary(self.spec["method"]) for channel in self.channels
        ]
        for call in self.calls:
            await call(self.request, timeout=CALL_TIMEOUT)

    def run(self, message) -> dict:
        window = Window(message)
        if message["phase"] == "closed":
            coroutine = self._closed(window, message.get("concurrency", 64))
        else:
            coroutine = self._open(window, message["rate"])
        return self.loop.run_until_complete(coroutine)

    def _check(self, answer, tally, inside):
        """Count one answer; bulk answers count each job's outcome."""
        if not self.bulk:
            if answer[:1] != b"\n":  # EnqueueResponse.job_id is set
                if inside:
                    tally.error(f"unexpected answer {answer[:40]!r}")
                return
            if inside:
                tally.calls += 1
                tally.jobs += 1
            return
        from jack import jobs_pb2

        response = jobs_pb2.EnqueueBulkResponse.FromString(answer)
        ok = sum(1 for result in response.results if result.code == 0)
        if not inside:
            return
        tally.calls += 1
        tally.jobs += ok
        if ok != self.bulk or len(response.results) != self.bulk:
            failed = [r for r in response.results if r.code != 0]
            tally.error(
                f"{self.bulk - ok} of {self.bulk} jobs failed"
                + (f": {failed[0].error}" if failed else "")
            )

    async def _one(self, call, window, tally, intended):
        import grpc

        sent = time.monotonic()
        try:
            answer = await call(self.request, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as error:
            done = time.monotonic()
            if window.inside(intended if intended is not None else done):
                tally.error(f"{error.code().name}: {error.details()}")
            return
        done = time.monotonic()
        inside = window.inside(intended if intended is not None else done)
        self._check(answer, tally, inside)
        if inside:
            stats.record(tally.latency, done - (intended if intended is not None else sent))
            if intended is not None:
                stats.record(tally.lag, sent - intended)

    async def _closed(self, window, concurrency):
        tally = Tally()
        loop = asyncio.get_running_loop()
        loop.call_at(window.start, tally.cpu_mark_start)
        loop.call_at(window.end, tally.cpu_mark_end)
        await asyncio.sleep(max(0.0, window.t0 - time.monotonic()))

        async def caller(call):
            while time.monotonic() < window.end:
                await self._one(call, window, tally, None)

        await asyncio.gather(
            *(caller(self.calls[i % len(self.calls)]) for i in range(concurrency))
        )
        tally.cpu_mark_end()
        return tally.result(window, concurrency=concurrency)

    async def _open(self, window, rate):
        tally = Tally()
        loop = asyncio.get_running_loop()
        loop.call_at(window.start, tally.cpu_mark_start)
        interval = 1.0 / rate
        in_flight = set()
        sent = 0
        while True:
            intended = window.t0 + sent * interval
            if intended >= window.end:
                break
            delay = intended - time.monotonic()
            if delay > 0.002:
                # asyncio's timers have millisecond resolution: sleep most of
                # the way, then yield to the loop until the intended time.
                await asyncio.sleep(delay - 0.0015)
            while time.monotonic() < intended:
                await asyncio.sleep(0)
            if len(in_flight) >= MAX_IN_FLIGHT:
                if window.inside(intended):
                    tally.error(f"over {MAX_IN_FLIGHT} calls in flight: not sent")
            else:
                call = self.calls[sent % len(self.calls)]
                task = loop.create_task(self._one(call, window, tally, intended))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            sent += 1
        tally.cpu_mark_end()
        if in_flight:
            await asyncio.wait(in_flight, timeout=CALL_TIMEOUT + 5)
        return tally.result(window, rate=rate)

    def close(self):
        async def close():
            for channel in self.channels:
                await channel.close()

        self.loop.run_until_complete(close())
        self.loop.close()


# Celery and RQ (synchronous producers) -------------------------------------


class SyncClient:
    """A producer whose enqueue call blocks: one call at a time."""

    jobs_per_call = 1

    def enqueue(self):
        raise NotImplementedError

    def run(self, message) -> dict:
        window = Window(message)
        if message["phase"] == "closed":
            return self._closed(window)
        return self._open(window, message["rate"])

    def _call(self, window, tally, intended):
        sent = time.monotonic()
        try:
            self.enqueue()
        except Exception as error:  # noqa: BLE001 -- Celery's, kombu's, redis-py's: all count
            done = time.monotonic()
            if window.inside(intended if intended is not None else done):
                tally.error(f"{type(error).__name__}: {error}")
            return
        done = time.monotonic()
        if window.inside(intended if intended is not None else done):
            tally.calls += 1
            tally.jobs += self.jobs_per_call
            stats.record(tally.latency, done - (intended if intended is not None else sent))
            if intended is not None:
                stats.record(tally.lag, sent - intended)

    def _closed(self, window):
        tally = Tally()
        time.sleep(max(0.0, window.t0 - time.monotonic()))
        while True:
            now = time.monotonic()
            if now >= window.end:
                break
            if now >= window.start:
                tally.cpu_mark_start()
            self._call(window, tally, None)
        tally.cpu_mark_end()
        return tally.result(window, concurrency=1)

    def _open(self, window, rate):
        tally = Tally()
        interval = 1.0 / rate
        sent = 0
        while True:
            intended = window.t0 + sent * interval
            if intended >= window.end:
                break
            now = time.monotonic()
            if intended > now:
                time.sleep(intended - now)
            if intended >= window.start:
                tally.cpu_mark_start()
            self._call(window, tally, intended)
            sent += 1
        tally.cpu_mark_end()
        return tally.result(window, rate=rate)

    def close(self):
        pass


def payload_text(size) -> str:
    """The payload Celery and RQ jobs carry: C{size} ASCII characters."""
    return "x" * size


class CeleryClient(SyncClient):
    """
    ``apply_async`` of one task with default settings (JSON serializer, no
    result backend), into a queue of the run's own.
    """

    def __init__(self, spec):
        from bench.tasks import celery_app

        self.app, self.task = celery_app(spec["broker"], spec["queue"])
        self.args = (payload_text(spec["payload_bytes"]),)
        self.task.apply_async(args=self.args)  # connect and declare the queue

    def enqueue(self):
        self.task.apply_async(args=self.args)

    def close(self):
        self.app.close()


class RqClient(SyncClient):
    """
    ``Queue.enqueue`` of one job, or (C{bulk}) ``Queue.enqueue_many`` of
    C{bulk} jobs, which RQ sends to Redis in one pipeline.
    """

    def __init__(self, spec):
        from redis import Redis
        from rq import Queue

        self.queue = Queue(spec["queue"], connection=Redis.from_url(spec["redis"]))
        self.payload = payload_text(spec["payload_bytes"])
        self.bulk = spec.get("bulk") or 0
        if self.bulk:
            self.jobs_per_call = self.bulk
        self.enqueue()

    def enqueue(self):
        from bench.tasks import RQ_FUNCTION

        if not self.bulk:
            self.queue.enqueue(RQ_FUNCTION, self.payload)
            return
        prepare = self.queue.prepare_data
        jobs = self.queue.enqueue_many(
            [prepare(RQ_FUNCTION, (self.payload,)) for _ in range(self.bulk)]
        )
        if len(jobs) != self.bulk:
            raise RuntimeError(f"enqueue_many made {len(jobs)} of {self.bulk} jobs")

    def close(self):
        self.queue.connection.close()


CLIENTS = {"grpc": GrpcClient, "celery": CeleryClient, "rq": RqClient}


def serve(spec, stdin=sys.stdin, stdout=sys.stdout):
    """Build the client for C{spec} and run the phases the runner sends."""
    client = CLIENTS[spec["client"]](spec)
    stdout.write("READY\n")
    stdout.flush()
    try:
        for line in stdin:
            message = json.loads(line)
            if message["phase"] == "quit":
                break
            result = client.run(message)
            stdout.write("RESULT " + json.dumps(result) + "\n")
            stdout.flush()
    finally:
        client.close()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m bench.load SPEC_JSON")
    serve(json.loads(argv[0]))


if __name__ == "__main__":
    main()
