"""The ``jack.BackgroundJobs`` servicer."""

from jack import jobs_pb2, jobs_pb2_grpc
from jackd.api.edge import describe, unary, wait_for


class BackgroundJobsServicer(jobs_pb2_grpc.BackgroundJobsServicer):
    """
    @param enqueuer: a ``jackd.enqueue.Enqueuer``.
    """

    def __init__(self, enqueuer):
        self._enqueuer = enqueuer

    @unary
    async def Enqueue(self, request, context):
        job_id = await wait_for(self._enqueuer.enqueue(request))
        return jobs_pb2.EnqueueResponse(job_id=job_id)

    @unary
    async def EnqueueBulk(self, request, context):
        outcomes = await wait_for(self._enqueuer.enqueue_bulk(request))
        response = jobs_pb2.EnqueueBulkResponse()
        add = response.results.add
        for index, (job_id, error) in enumerate(outcomes):
            if error is None:
                add(index=index, job_id=job_id)
            else:
                code, message = describe(error)
                add(index=index, code=code.value[0], error=message)
        return response


def register(server, enqueuer):
    jobs_pb2_grpc.add_BackgroundJobsServicer_to_server(
        BackgroundJobsServicer(enqueuer), server
    )
    return jobs_pb2.DESCRIPTOR.services_by_name["BackgroundJobs"].full_name

