"""
What Jack's own Python code costs per call, without gRPC around it:
``python -m bench.micro``.

It builds Jack's real enqueue path in-process (memory storage, noop backend,
``Enqueuer``, the ``jack.BackgroundJobs`` servicer and the edge's reactor
side, ``jackd.api.edge.serving``) and times, per call, in microseconds of
this process's CPU:

- ``edge``: what a call costs from its request bytes to its response, as a
  gRPC thread decodes it and the reactor serves it, minus the hop between
  the two threads (the noop backend answers at once, so nothing waits), with
  the noop backend's log written the way ``twistd -n`` writes it;
- ``edge, no log observer``: the same, with nobody listening to the log, to
  show what the default log line costs (Jack never runs like this);
- ``Enqueuer.enqueue``, ``JobIdGenerator.new``, the job build
  (``_job_template`` + ``_fill_job``), ``Enqueuer._check``: the pieces.

``--bulk`` times ``Enqueuer.enqueue_bulk`` instead, per job: 100 valid jobs
due now, of two producers with three job types each, run to the end with the
noop backend and the same log observer as ``edge`` (the servicer's response
is not included).

Compare with the benchmark's "server CPU µs/job" of the grpc.aio echo and of
Jack: the difference between those two is what the edge and domain add.
"""

import argparse
import io
import time

from twisted.internet import task


def _enqueuer(clock):
    """Jack's real ``Enqueuer`` on the memory store and the noop backend."""
    from jackd.backends.noop import NoopBackend
    from jackd.enqueue import Enqueuer
    from jackd.scheduler import Scheduler
    from jackd.scheduler.memory import MemoryScheduleStore
    from jackd.storage.memory import MemoryConfigStore
    from jackd.validation import Limits

    store = MemoryConfigStore()
    backend = NoopBackend()
    scheduler = Scheduler(MemoryScheduleStore(), backend, clock)
    return Enqueuer(store, backend, scheduler, Limits(), clock)


def _stack(clock):
    from jack import admin_pb2, jobs_pb2
    from jack.job_pb2 import Queue
    from jackd.api.edge import serving
    from jackd.api.jobs import BackgroundJobsServicer
    from jackd.ids import new_producer_id

    enqueuer = _enqueuer(clock)
    store = enqueuer._store
    producer = admin_pb2.Producer(producer_id=new_producer_id(), name="bench")
    store.create_producer(producer)
    store.create_job_type(
        admin_pb2.JobType(producer_id=producer.producer_id, name="bench-job",
                          queue=Queue.QUEUE_HIGH, max_retries=3)
    )
    servicer = BackgroundJobsServicer(enqueuer)
    serve = serving(servicer.Enqueue)

    def handler(data):
        # What a gRPC thread does, minus the hop: decode, then serve.
        return serve(jobs_pb2.EnqueueRequest.FromString(data))
    request = jobs_pb2.EnqueueRequest(
        producer_id=producer.producer_id, job_type="bench-job", payload=b"x" * 100
    )
    return enqueuer, handler, request


BULK_JOBS = 100


def _bulk_request(store):
    """
    An ``EnqueueBulkRequest`` of L{BULK_JOBS} valid jobs due now, spread over
    two producers with three job types each, every other one with a trace_id.
    """
    from jack import admin_pb2, jobs_pb2
    from jack.job_pb2 import Queue
    from jackd.ids import new_producer_id

    keys = []
    for p in range(2):
        producer = admin_pb2.Producer(producer_id=new_producer_id(), name=f"bulk-{p}")
        store.create_producer(producer)
        for t, queue in enumerate([Queue.QUEUE_HIGH, Queue.QUEUE_MEDIUM, Queue.QUEUE_LOW]):
            store.create_job_type(admin_pb2.JobType(
                producer_id=producer.producer_id, name=f"bulk-job-{t}", queue=queue,
                max_retries=t))
            keys.append((producer.producer_id, f"bulk-job-{t}"))
    return jobs_pb2.EnqueueBulkRequest(jobs=[
        jobs_pb2.EnqueueRequest(
            producer_id=keys[i % len(keys)][0], job_type=keys[i % len(keys)][1],
            payload=b"x" * 100, trace_id=f"trace-{i}" if i % 2 else "",
        )
        for i in range(BULK_JOBS)
    ])


def _drive(d):
    """The result of a Deferred that fired already (the noop path)."""
    box = []
    d.addBoth(box.append)
    if not box:
        raise RuntimeError("the handler waits: this path is not synchronous")
    return box[0]


def _time(function, count):
    start = time.process_time()
    for _ in range(count):
        function()
    return (time.process_time() - start) / count * 1e6


def measure(count=20000) -> dict:
    from twisted.logger import globalLogPublisher, textFileLogObserver

    from jackd.enqueue import _fill_job, _job_template

    clock = task.Clock()
    clock.advance(time.time())
    enqueuer, handler, request = _stack(clock)
    data = request.SerializeToString()
    job_type = enqueuer._store.get_job_type(request.producer_id, request.job_type).result

    def edge():
        _drive(handler(data))

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

    def make_job():
        job = _job_template(job_type, 1_700_000_000_000_000_000)
        _fill_job(job, "job_01M8XX5JVV041061050R3GG28A", request, False)

    results["job build (_job_template + _fill_job)"] = _time(make_job, count)
    results["EnqueueRequest.FromString"] = _time(
        lambda: type(request).FromString(data), count)
    return results


def measure_bulk(count=20000) -> dict:
    """Per job: C{count} jobs in bulks of L{BULK_JOBS}, as twistd logs."""
    from twisted.logger import globalLogPublisher, textFileLogObserver

    clock = task.Clock()
    clock.advance(time.time())
    enqueuer = _enqueuer(clock)
    bulk = _bulk_request(enqueuer._store)

    def enqueue_bulk():
        outcomes = []
        enqueuer.enqueue_bulk(bulk).addCallback(outcomes.append)
        [results] = outcomes  # the noop path answers at once
        assert all(error is None for _, error in results), results

    observer = textFileLogObserver(io.StringIO())  # what twistd -n logs through
    globalLogPublisher.addObserver(observer)
    try:
        enqueue_bulk()
        per_bulk = _time(enqueue_bulk, max(1, count // BULK_JOBS))
    finally:
        globalLogPublisher.removeObserver(observer)
    return {f"Enqueuer.enqueue_bulk x{BULK_JOBS}, per job (as twistd logs)":
            per_bulk / BULK_JOBS}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--bulk", action="store_true",
                   help="time Enqueuer.enqueue_bulk per job instead")
    args = p.parse_args(argv)
    for name, micros in (measure_bulk if args.bulk else measure)(args.count).items():
        print(f"{micros:8.1f} µs  {name}")


if __name__ == "__main__":
    main()
