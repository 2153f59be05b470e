"""The ``jack.AdminService`` servicer."""

from jack import admin_pb2
from jackd.api.edge import add_servicer


class AdminServicer:
    """
    Deferred-based handlers, run on the reactor thread (see
    ``jackd.api.edge``).

    @param admin: a ``jackd.admin.Admin``.
    """

    def __init__(self, admin):
        self._admin = admin

    def CreateProducer(self, request):
        d = self._admin.create_producer(request.name, request.description)
        d.addCallback(lambda producer: admin_pb2.CreateProducerResponse(producer=producer))
        return d

    def GetProducer(self, request):
        d = self._admin.get_producer(request.producer_id)
        d.addCallback(lambda producer: admin_pb2.GetProducerResponse(producer=producer))
        return d

    def ListProducers(self, request):
        d = self._admin.list_producers(request.page_size, request.page_token)
        d.addCallback(
            lambda page: admin_pb2.ListProducersResponse(
                producers=page[0], next_page_token=page[1]
            )
        )
        return d

    def CreateJobType(self, request):
        max_retries = request.max_retries if request.HasField("max_retries") else None
        d = self._admin.create_job_type(
            request.producer_id,
            request.name,
            request.queue,
            max_retries,
            request.description,
        )
        d.addCallback(lambda job_type: admin_pb2.CreateJobTypeResponse(job_type=job_type))
        return d

    def ListJobTypes(self, request):
        d = self._admin.list_job_types(
            request.producer_id, request.page_size, request.page_token
        )
        d.addCallback(
            lambda page: admin_pb2.ListJobTypesResponse(
                job_types=page[0], next_page_token=page[1]
            )
        )
        return d


def register(server, hop, admin):
    return add_servicer(
        server,
        admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
        AdminServicer(admin),
        hop,
    )
