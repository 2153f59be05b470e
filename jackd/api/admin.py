"""The ``jack.AdminService`` servicer."""

from jack import admin_pb2, admin_pb2_grpc
from jackd.api.edge import add_servicer, unary, wait_for


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    """
    @param admin: a ``jackd.admin.Admin``.
    """

    def __init__(self, admin):
        self._admin = admin

    @unary
    async def CreateProducer(self, request, context):
        producer = await wait_for(
            self._admin.create_producer(request.name, request.description)
        )
        return admin_pb2.CreateProducerResponse(producer=producer)

    @unary
    async def GetProducer(self, request, context):
        producer = await wait_for(self._admin.get_producer(request.producer_id))
        return admin_pb2.GetProducerResponse(producer=producer)

    @unary
    async def ListProducers(self, request, context):
        producers, token = await wait_for(
            self._admin.list_producers(request.page_size, request.page_token)
        )
        return admin_pb2.ListProducersResponse(
            producers=producers, next_page_token=token
        )

    @unary
    async def CreateJobType(self, request, context):
        max_retries = request.max_retries if request.HasField("max_retries") else None
        job_type = await wait_for(
            self._admin.create_job_type(
                request.producer_id,
                request.name,
                request.queue,
                max_retries,
                request.description,
            )
        )
        return admin_pb2.CreateJobTypeResponse(job_type=job_type)

    @unary
    async def ListJobTypes(self, request, context):
        job_types, token = await wait_for(
            self._admin.list_job_types(
                request.producer_id, request.page_size, request.page_token
            )
        )
        return admin_pb2.ListJobTypesResponse(
            job_types=job_types, next_page_token=token
        )


def register(server, admin):
    return add_servicer(
        server,
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
        AdminServicer(admin),
    )
