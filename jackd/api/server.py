"""
The gRPC server as a Twisted service: grpcio's threaded server, whose calls
reach Jack's Deferred-based servicers on the reactor thread through a
``ReactorHop`` (``jackd.api.edge``), serving the servicers registered with
it plus server reflection (both the ``grpc.reflection.v1`` and
``grpc.reflection.v1alpha`` services).
"""

from concurrent import futures

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2
from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from jackd.api.edge import ReactorHop

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


REFLECTION_THREADS = 4
HEALTH_THREADS = 4


def _on_pool(pool, behavior):
    """C{behavior}, run by grpcio on C{pool} instead of the server's own threads."""

    def run(request_iterator, context):
        return behavior(request_iterator, context)

    run.experimental_thread_pool = pool
    return run


def _add_reflection(server, service_names, pool):
    """
    Serve reflection under both names.  grpcio-reflection ships only the
    v1alpha service; v1 has the same messages, so the same servicer answers
    it.  A reflection stream holds a thread for as long as the client keeps
    it open (grpcurl, grpcui): they get C{pool}, not the threads Jack's
    calls or health checks need.
    """
    names = [*service_names, REFLECTION_V1, reflection.SERVICE_NAME]
    servicer = reflection.ReflectionServicer(names)
    for name in (REFLECTION_V1, reflection.SERVICE_NAME):
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            name,
            {
                "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                    _on_pool(pool, servicer.ServerReflectionInfo),
                    request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                    response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                )
            },
        ),))
    return names


class GrpcServer(Service):
    """
    @param port: TCP port, on all interfaces.
    @param registrars: callables taking the gRPC server and the
        ``ReactorHop`` its calls take, each adding its servicer and
        returning the full service name it serves.
    @param grace: seconds in-flight calls may take to finish at shutdown.
    @param max_receive_bytes: the largest request message accepted.
    @param threads: gRPC's handler threads: the most calls in flight at
        once (more wait for a thread).  A call holds its thread until Jack
        answers it, so this bounds throughput to C{threads} divided by the
        time an answer takes (with Pub/Sub, its batch latency and a round
        trip).
    @param max_calls: the most calls held at once, working or waiting for
        a thread; more are refused with RESOURCE_EXHAUSTED.
    @param reactor: the reactor the calls hop to.
    """

    _log = Logger()

    def __init__(self, port, registrars, grace, max_receive_bytes, threads, max_calls, reactor):
        self.port = port
        self._registrars = registrars
        self._grace = grace
        self._max_receive_bytes = max_receive_bytes
        self._threads = threads
        self._max_calls = max_calls
        self._reactor = reactor
        self._server = None
        self._hop = None
        self._pools = []

    def startService(self):
        super().startService()
        # Created here, not earlier: twistd forks (to daemonize) between
        # makeService and startService, and gRPC must not start before it.
        # Jack's calls wait for the reactor on threads of their own; health
        # (the server's own pool) and reflection streams have theirs, so
        # neither slow calls nor open reflection streams starve health checks.
        calls = futures.ThreadPoolExecutor(self._threads, thread_name_prefix="grpc")
        own = futures.ThreadPoolExecutor(HEALTH_THREADS, thread_name_prefix="grpc-health")
        reflecting = futures.ThreadPoolExecutor(
            REFLECTION_THREADS, thread_name_prefix="grpc-reflection"
        )
        self._pools = [calls, own, reflecting]
        self._hop = ReactorHop(self._reactor, executor=calls)
        server = grpc.server(
            own,
            maximum_concurrent_rpcs=self._max_calls,
            options=[
                ("grpc.max_receive_message_length", self._max_receive_bytes),
                # Two processes must not share a port by accident.
                ("grpc.so_reuseport", 0),
            ]
        )
        names = _add_reflection(
            server, [register(server, self._hop) for register in self._registrars], reflecting
        )
        address = f"[::]:{self.port}"
        self.port = server.add_insecure_port(address)
        self._server = server
        server.start()
        self._log.info(
            "Jack serving gRPC on port {port} ({threads} threads): {services}",
            port=self.port,
            threads=self._threads,
            services=", ".join(names),
        )

    @inlineCallbacks
    def stopService(self):
        super().stopService()
        if self._server is None:
            return
        self._log.info(
            "Refusing new calls; waiting up to {grace}s for calls in flight",
            grace=self._grace,
        )
        stopped = self._server.stop(self._grace)
        yield deferToThread(stopped.wait)
        self._server = None
        # Calls gRPC gave up on at the end of the grace period may still
        # wait for an answer: release their threads, then let them go.
        self._hop.close()
        for pool in self._pools:
            pool.shutdown(wait=False)
        self._log.info("gRPC server stopped: calls in flight finished")
