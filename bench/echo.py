"""
The ceilings: servers that answer Jack's ``jack.BackgroundJobs/Enqueue`` with
a fixed reply and do nothing else, so that Jack can be measured against the
limit of its own stack.

    python -m bench.echo --model aio --port 50099

Models:

- ``aio``: a grpc.aio server on Twisted's asyncio reactor, as Jack runs
  (``asyncioreactor.install()``, then the reactor runs the loop).
- ``threaded``: grpcio's threaded server (``grpc.server`` with a thread pool).
- ``threaded-hop``: the threaded server, each handler hopping into a Twisted
  reactor thread (``blockingCallFromThread``) for a Deferred's result: the
  other way Jack's Deferred-based handlers could be reached.
- ``threaded-batch-hop``: the same hop, but the reactor is woken once per
  batch of waiting calls, not once per call: Jack's own edge
  (``jackd.api.edge.ReactorHop``) with a handler that does nothing.

Each prints ``READY`` once it listens, and stops on SIGTERM.
"""

import argparse
import signal
import sys
import threading
from concurrent import futures
from functools import partial


SERVICE = "jack.BackgroundJobs"
METHOD = "Enqueue"
FULL_METHOD = f"/{SERVICE}/{METHOD}"


def reply() -> bytes:
    """The fixed answer: an ``EnqueueResponse`` with a job id."""
    from jack import jobs_pb2

    return jobs_pb2.EnqueueResponse(job_id="job_" + "0" * 26).SerializeToString()


def _handlers(handler):
    import grpc

    return (
        grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(handler)}
        ),
    )


def _ready():
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def serve_aio(port):
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    import asyncio

    import grpc
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    answer = reply()

    async def echo(request, context):
        return answer

    async def start():
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(_handlers(echo))
        server.add_insecure_port(f"[::]:{port}")
        await server.start()
        return server

    servers = []  # keep a reference: a collected grpc.aio server stops

    def started(server):
        servers.append(server)
        _ready()

    def failed(failure):
        sys.stderr.write(failure.getTraceback())
        reactor.stop()

    def stop():
        if servers:
            return Deferred.fromFuture(asyncio.ensure_future(servers[0].stop(0)))

    reactor.callWhenRunning(
        lambda: Deferred.fromFuture(asyncio.ensure_future(start())).addCallbacks(
            started, failed
        )
    )
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    reactor.run()


def _serve_threaded(port, threads, handler):
    import grpc

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads),
        options=[("grpc.so_reuseport", 0)],
    )
    server.add_generic_rpc_handlers(_handlers(handler))
    server.add_insecure_port(f"[::]:{port}")
    server.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    _ready()
    stopped.wait()
    server.stop(0).wait()


def serve_threaded(port, threads):
    answer = reply()

    def echo(request, context):
        return answer

    _serve_threaded(port, threads, echo)


def _serve_threaded_with_reactor(port, threads, hop):
    """
    The threaded server whose handler gets the fixed answer from the
    reactor thread through C{hop(reactor)(succeed, answer)}, with Twisted's asyncio reactor
    running in a thread of its own.
    """
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import succeed

    answer = reply()
    thread = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
    )
    thread.start()
    call = hop(reactor)

    def echo(request, context):
        return call(succeed, answer)

    try:
        _serve_threaded(port, threads, echo)
    finally:
        reactor.callFromThread(reactor.stop)


def serve_threaded_hop(port, threads):
    from twisted.internet.threads import blockingCallFromThread

    _serve_threaded_with_reactor(
        port, threads, lambda reactor: partial(blockingCallFromThread, reactor)
    )


def serve_threaded_batch_hop(port, threads):
    from jackd.api.edge import ReactorHop

    _serve_threaded_with_reactor(port, threads, lambda reactor: ReactorHop(reactor).call)


MODELS = {
    "aio": lambda port, threads: serve_aio(port),
    "threaded": serve_threaded,
    "threaded-hop": serve_threaded_hop,
    "threaded-batch-hop": serve_threaded_batch_hop,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8,
                        help="thread pool size of the threaded models (default 8)")
    args = parser.parse_args(argv)
    MODELS[args.model](args.port, args.threads)


if __name__ == "__main__":
    main()
