"""
What Jack's own Python code costs per call, without gRPC around it:
``python -m bench.micro``.

It builds Jack's real enqueue path in-process (memory storage, noop backend,
``Enqueuer``, the ``jack.BackgroundJobs`` servicer and the edge's decoding
wrapper) and times, per call, in microseconds of this process's CPU:

- ``edge``: the handler gRPC would call with the request bytes, run to its
  end (the noop backend answers at once, so nothing waits), with the noop
  backend's log line written the way ``twistd -n`` writes it;
- ``edge, no log observer``: the same, with nobody listening to the log, to
  show what the default log line costs (Jack never runs like this);
- ``Enqueuer.enqueue``, ``JobIdGenerator.new``, ``Enqueuer._make_job``,
  ``Enqueuer._check``: the pieces.

Compare with the benchmark's "server CPU µs/job" of the grpc.aio echo and of
Jack: the difference between those two is what the edge and domain add.
"""

import argparse
import io
import time

from twisted.internet import task


def _stack(clock):
    from jack import admin_pb2, jobs_pb2
    from jack.job_pb2 import Queue
    from jackd.api.edge import _decoding
    from jackd.api.jobs import BackgroundJobsServicer
    from jackd.backends.noop import NoopBackend
    from jackd.enqueue import Enqueuer
    from jackd.ids import new_producer_id
    from jackd.scheduler import Scheduler
    from jackd.scheduler.memory import MemoryScheduleStore
    from jackd.storage.memory import MemoryConfigStore
    from jackd.validation import Limits

    store = MemoryConfigStore()
    backend = NoopBackend()
    producer = admin_pb2.Producer(producer_id=new_producer_id(), name="bench")
    store.create_producer(producer)
    store.create_job_type(
        admin_pb2.JobType(producer_id=producer.producer_id, name="bench-job",
                          queue=Queue.QUEUE_HIGH, max_retries=3)
    )
    scheduler = Scheduler(MemoryScheduleStore(), backend, clock)
    enqueuer = Enqueuer(store, backend, scheduler, Limits(), clock)
    servicer = BackgroundJobsServicer(enqueuer)
    handler = _decoding(servicer.Enqueue, jobs_pb2.EnqueueRequest)
    request = jobs_pb2.EnqueueRequest(
        producer_id=producer.producer_id, job_type="bench-job", payload=b"x" * 100
    )
    return enqueuer, handler, request


def _drive(coroutine):
    """Run a coroutine that never suspends (the noop path) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the handler suspended: this path is not synchronous")


def _time(function, count):
    start = time.process_time()
    for _ in range(count):
        function()
    return (time.process_time() - start) / count * 1e6


def measure(count=20000) -> dict:
    from twisted.logger import globalLogPublisher, textFileLogObserver

    clock = task.Clock()
    clock.advance(time.time())
    enqueuer, handler, request = _stack(clock)
    data = request.SerializeToString()
    job_type = enqueuer._store.get_job_type(request.producer_id, request.job_type).result

    def edge():
        _drive(handler(data, None))

    results = {}
    sink = io.StringIO()
    observer = textFileLogObserver(sink)  # what twistd -n logs through
    globalLogPublisher.addObserver(observer)
    try:
        edge()
        results["edge (as twistd logs)"] = _time(edge, count)
    finally:
        globalLogPublisher.removeObserver(observer)
    results["edge, no log observer"] = _time(edge, count)
    results["Enqueuer.enqueue, no log observer"] = _time(
        lambda: enqueuer.enqueue(request), count)
    results["Enqueuer._check"] = _time(lambda: enqueuer._check(request), count)
    results["JobIdGenerator.new"] = _time(enqueuer._ids.new, count)
    results["Enqueuer._make_job"] = _time(
        lambda: enqueuer._make_job(job_type, request, 1_700_000_000_000_000_000), count)
    results["EnqueueRequest.FromString"] = _time(
        lambda: type(request).FromString(data), count)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20000)
    args = p.parse_args(argv)
    for name, micros in measure(args.count).items():
        print(f"{micros:8.1f} µs  {name}")


if __name__ == "__main__":
    main()
