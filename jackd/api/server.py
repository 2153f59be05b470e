"""
The gRPC server as a Twisted service: grpcio's threaded server, whose calls
reach Jack's Deferred-based servicers on the reactor thread through a
``ReactorHop`` (``jackd.api.edge``), serving the servicers registered with
it plus server reflection (both the ``grpc.reflection.v1`` and
``grpc.reflection.v1alpha`` services).
"""

from concurrent import futures

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from jackd.api.edge import ReactorHop

REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _add_reflection(server, service_names):
    """
    Serve reflection under both names.  grpcio-reflection ships only the
    v1alpha service; v1 has the same messages, so the same servicer answers
    it through a generic handler.
    """
    names = [*service_names, REFLECTION_V1, reflection.SERVICE_NAME]
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_V1,
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))
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
    @param reactor: the reactor the calls hop to.
    """

    _log = Logger()

    def __init__(self, port, registrars, grace, max_receive_bytes, threads, reactor):
        self.port = port
        self._registrars = registrars
        self._grace = grace
        self._max_receive_bytes = max_receive_bytes
        self._threads = threads
        self._reactor = reactor
        self._server = None
        self._hop = None
        self._pool = None

    def startService(self):
        super().startService()
        # Created here, not earlier: twistd forks (to daemonize) between
        # makeService and startService, and gRPC must not start before it.
        self._hop = ReactorHop(self._reactor)
        self._pool = futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix="grpc"
        )
        server = grpc.server(
            self._pool,
            options=[
                ("grpc.max_receive_message_length", self._max_receive_bytes),
                # Two processes must not share a port by accident.
                ("grpc.so_reuseport", 0),
            ]
        )
        names = _add_reflection(
            server, [register(server, self._hop) for register in self._registrars]
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
        self._pool.shutdown(wait=False)
        self._log.info("gRPC server stopped: calls in flight finished")
