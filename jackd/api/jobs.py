"""The ``jack.BackgroundJobs`` servicer."""

from jack import jobs_pb2, jobs_pb2_grpc
from jackd.api.edge import add_servicer, describe, unary, wait_for


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
        described = {}  # one failed hand-over fails many jobs: log it once
        for index, (job_id, error) in enumerate(outcomes):
            if error is None:
                add(index=index, job_id=job_id)
            else:
                if id(error) not in described:
                    described[id(error)] = describe(error)
                code, message = described[id(error)]
                add(index=index, code=code.value[0], error=message)
        return response


def register(server, enqueuer):
    return add_servicer(
        server,
        jobs_pb2.DESCRIPTOR.services_by_name["BackgroundJobs"],
        BackgroundJobsServicer(enqueuer),
    )

