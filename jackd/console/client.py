"""
The console's only way to Jack: ``jack.AdminService`` over a grpc.aio
channel, on the asyncio loop under Twisted's asyncio reactor.

Calls are coroutines and fail with ``grpc.aio.AioRpcError`` (its
``code()`` and ``details()`` are what the pages show).
"""

import grpc

from jack import admin_pb2, admin_pb2_grpc

MAX_RECONNECT_BACKOFF_MS = 3000


class AdminClient:
    """
    @param address: Jack's gRPC target (``localhost:50051``).
    @param timeout: seconds each call may take.
    """

    def __init__(self, address, timeout):
        self.address = address
        self._timeout = timeout
        self._channel = None
        self._stub = None

    def open(self):
        """
        Create the channel.  Called from C{startService}, not earlier:
        twistd forks between C{makeService} and C{startService}, and gRPC
        must not start before the fork.
        """
        self._channel = grpc.aio.insecure_channel(
            self.address,
            # gRPC waits up to 2 minutes between reconnection attempts;
            # once Jack is back, the console should notice within seconds.
            options=[("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS)],
        )
        self._stub = admin_pb2_grpc.AdminServiceStub(self._channel)

    async def close(self):
        if self._channel is not None:
            channel, self._channel = self._channel, None
            self._stub = None
            await channel.close()

    async def list_producers(self, page_size, page_token):
        """
        @return: C{(producers, next_page_token)}.
        """
        response = await self._stub.ListProducers(
            admin_pb2.ListProducersRequest(page_size=page_size, page_token=page_token),
            timeout=self._timeout,
        )
        return list(response.producers), response.next_page_token

    async def get_producer(self, producer_id):
        response = await self._stub.GetProducer(
            admin_pb2.GetProducerRequest(producer_id=producer_id), timeout=self._timeout
        )
        return response.producer

    async def create_producer(self, name, description):
        response = await self._stub.CreateProducer(
            admin_pb2.CreateProducerRequest(name=name, description=description),
            timeout=self._timeout,
        )
        return response.producer

    async def list_job_types(self, producer_id, page_size, page_token):
        """
        @return: C{(job_types, next_page_token)}.
        """
        response = await self._stub.ListJobTypes(
            admin_pb2.ListJobTypesRequest(
                producer_id=producer_id, page_size=page_size, page_token=page_token
            ),
            timeout=self._timeout,
        )
        return list(response.job_types), response.next_page_token

    async def create_job_type(self, producer_id, name, queue, max_retries, description):
        """
        @param queue: a ``jack.Queue`` number.
        @param max_retries: an int, or C{None} for Jack's default.
        """
        request = admin_pb2.CreateJobTypeRequest(
            producer_id=producer_id, name=name, queue=queue, description=description
        )
        if max_retries is not None:
            request.max_retries = max_retries
        response = await self._stub.CreateJobType(request, timeout=self._timeout)
        return response.job_type
