"""
What ``make bench`` compares: one `Variant` per row of the table, and the
same-run ratios (`Ratio`) that the issue sets targets for.
"""

from dataclasses import dataclass

ENQUEUE = "/jack.BackgroundJobs/Enqueue"
ENQUEUE_BULK = "/jack.BackgroundJobs/EnqueueBulk"


@dataclass(frozen=True)
class Variant:
    """
    @ivar server: what serves it: C{echo-aio}, C{echo-threaded},
        C{echo-threaded-hop}, C{jack-noop}, C{jack-pubsub}, C{redis} (the run's
        own Redis) or C{rabbitmq} (the local one).
    @ivar client: the load process's client: C{grpc}, C{celery} or C{rq}.
    @ivar bulk: jobs per call (0: one job per call, unary).
    @ivar concurrency: calls in flight in the closed loop, over all load
        processes (synchronous producers have one each).
    @ivar open_basis: the open loop's rate is a fraction of the grpc.aio
        echo's maximum calls/s (C{echo}), or of the variant's own maximum
        (C{own}: bulk calls, other queues and the Pub/Sub backend, which
        cannot take the echo's rate; no target compares their latency with
        the echo's).
    """

    name: str
    label: str
    group: str
    server: str
    client: str
    method: str = ENQUEUE
    bulk: int = 0
    concurrency: int = 64
    open_basis: str = "echo"


VARIANTS = (
    Variant("echo-aio", "gRPC echo: grpc.aio on Twisted's asyncio reactor",
            "ceiling", "echo-aio", "grpc"),
    Variant("jack-enqueue", "Jack Enqueue (memory + noop)",
            "jack", "jack-noop", "grpc"),
    Variant("echo-threaded", "gRPC echo: grpcio threaded server (8 threads)",
            "ceiling", "echo-threaded", "grpc"),
    Variant("echo-threaded-hop", "gRPC echo: threaded server -> Twisted reactor hop",
            "ceiling", "echo-threaded-hop", "grpc"),
    Variant("echo-threaded-batch-hop",
            "gRPC echo: threaded server -> batched Twisted reactor hop",
            "ceiling", "echo-threaded-batch-hop", "grpc"),
    Variant("jack-bulk-100", "Jack EnqueueBulk x100 (memory + noop)",
            "jack", "jack-noop", "grpc", ENQUEUE_BULK, bulk=100, concurrency=16,
            open_basis="own"),
    Variant("jack-bulk-1000", "Jack EnqueueBulk x1000 (memory + noop)",
            "jack", "jack-noop", "grpc", ENQUEUE_BULK, bulk=1000, concurrency=4,
            open_basis="own"),
    Variant("celery-redis", "Celery apply_async -> Redis",
            "other", "redis", "celery", open_basis="own"),
    Variant("celery-rabbitmq", "Celery apply_async -> RabbitMQ",
            "other", "rabbitmq", "celery", open_basis="own"),
    Variant("rq-enqueue", "RQ enqueue -> Redis",
            "other", "redis", "rq", open_basis="own"),
    Variant("rq-enqueue-many-100", "RQ enqueue_many x100 (pipelined) -> Redis",
            "other", "redis", "rq", bulk=100, open_basis="own"),
    Variant("jack-pubsub-enqueue", "Jack Enqueue (memory + Pub/Sub emulator)",
            "jack", "jack-pubsub", "grpc", open_basis="own"),
    Variant("jack-pubsub-bulk-100", "Jack EnqueueBulk x100 (memory + Pub/Sub emulator)",
            "jack", "jack-pubsub", "grpc", ENQUEUE_BULK, bulk=100, concurrency=16,
            open_basis="own"),
)

BY_NAME = {variant.name: variant for variant in VARIANTS}

# What the smoke run (jackd/test/test_bench_smoke.py) exercises: one of each
# kind of server and client, no emulator.
SMOKE = (
    "echo-aio", "jack-enqueue", "echo-threaded", "jack-bulk-100",
    "celery-redis", "celery-rabbitmq", "rq-enqueue", "rq-enqueue-many-100",
)


@dataclass(frozen=True)
class Ratio:
    """
    C{numerator}'s metric over C{denominator}'s, per repetition.

    @ivar metric: C{calls} or C{jobs} (closed-loop maximum per second) or
        C{p99} (open-loop latency).
    @ivar goal: C{(">=", 0.85)}, C{("<=", 1.3)} or C{None} (reported only).
    """

    name: str
    numerator: str
    numerator_metric: str
    denominator: str
    denominator_metric: str
    goal: tuple | None = None


RATIOS = (
    Ratio("Jack Enqueue / grpc.aio echo, calls/s",
          "jack-enqueue", "calls", "echo-aio", "calls", (">=", 0.85)),
    Ratio("Jack Enqueue / grpc.aio echo, p99 at the same open-loop rate",
          "jack-enqueue", "p99", "echo-aio", "p99", ("<=", 1.3)),
    Ratio("Jack Enqueue / threaded echo, calls/s",
          "jack-enqueue", "calls", "echo-threaded", "calls"),
    Ratio("Jack Enqueue / threaded echo, p99 at the same open-loop rate",
          "jack-enqueue", "p99", "echo-threaded", "p99"),
    Ratio("threaded echo / grpc.aio echo, calls/s",
          "echo-threaded", "calls", "echo-aio", "calls"),
    Ratio("threaded echo with reactor hop / grpc.aio echo, calls/s",
          "echo-threaded-hop", "calls", "echo-aio", "calls"),
    Ratio("threaded echo with batched reactor hop / grpc.aio echo, calls/s",
          "echo-threaded-batch-hop", "calls", "echo-aio", "calls"),
    Ratio("Jack EnqueueBulk x100 jobs/s / Jack Enqueue calls/s",
          "jack-bulk-100", "jobs", "jack-enqueue", "calls", (">=", 25)),
    Ratio("Jack EnqueueBulk x1000 jobs/s / Jack Enqueue calls/s",
          "jack-bulk-1000", "jobs", "jack-enqueue", "calls"),
    Ratio("Jack Enqueue (noop) / Celery apply_async (Redis), jobs/s",
          "jack-enqueue", "jobs", "celery-redis", "jobs", (">=", 1)),
    Ratio("Jack Enqueue (noop) / Celery apply_async (RabbitMQ), jobs/s",
          "jack-enqueue", "jobs", "celery-rabbitmq", "jobs", (">=", 1)),
    Ratio("Jack Enqueue (Pub/Sub) / Celery apply_async (Redis), jobs/s",
          "jack-pubsub-enqueue", "jobs", "celery-redis", "jobs", (">=", 1)),
    Ratio("Jack Enqueue (Pub/Sub) / Celery apply_async (RabbitMQ), jobs/s",
          "jack-pubsub-enqueue", "jobs", "celery-rabbitmq", "jobs", (">=", 1)),
    Ratio("Jack Enqueue (noop) / RQ enqueue, jobs/s",
          "jack-enqueue", "jobs", "rq-enqueue", "jobs"),
    Ratio("Jack EnqueueBulk x100 (noop) / RQ enqueue_many x100, jobs/s",
          "jack-bulk-100", "jobs", "rq-enqueue-many-100", "jobs", (">=", 3)),
    Ratio("Jack EnqueueBulk x100 (Pub/Sub) / RQ enqueue_many x100, jobs/s",
          "jack-pubsub-bulk-100", "jobs", "rq-enqueue-many-100", "jobs", (">=", 3)),
    Ratio("Jack Enqueue: Pub/Sub / noop, calls/s",
          "jack-pubsub-enqueue", "calls", "jack-enqueue", "calls", (">=", 0.5)),
    Ratio("Jack EnqueueBulk x100: Pub/Sub / noop, jobs/s",
          "jack-pubsub-bulk-100", "jobs", "jack-bulk-100", "jobs"),
)
