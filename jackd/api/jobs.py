"""The ``jack.BackgroundJobs`` servicer."""

from collections import Counter

from jack import jobs_pb2, jobs_pb2_grpc
from jackd.api.edge import add_servicer, describe, unary, wait_for
from jackd.errors import JackError


class BackgroundJobsServicer(jobs_pb2_grpc.BackgroundJobsServicer):
    """
    @param enqueuer: a ``jackd.enqueue.Enqueuer``.
    @param counts: a C{collections.Counter} counting each job's outcome by
        status code name, C{"OK"} when accepted (the manhole's C{stats()}).
    """

    def __init__(self, enqueuer, counts=None):
        self._enqueuer = enqueuer
        self._counts = Counter() if counts is None else counts

    @unary
    async def Enqueue(self, request, context):
        try:
            job_id = await wait_for(self._enqueuer.enqueue(request))
        except JackError as error:
            self._counts[error.code] += 1
            raise
        self._counts["OK"] += 1
        return jobs_pb2.EnqueueResponse(job_id=job_id)

    @unary
    async def EnqueueBulk(self, request, context):
        counts = self._counts
        try:
            outcomes = await wait_for(self._enqueuer.enqueue_bulk(request))
        except JackError as error:
            counts[error.code] += 1
            raise
        response = jobs_pb2.EnqueueBulkResponse()
        add = response.results.add
        described = {}  # one failed hand-over fails many jobs: log it once
        for index, (job_id, error) in enumerate(outcomes):
            if error is None:
                add(index=index, job_id=job_id)
                counts["OK"] += 1
            else:
                if id(error) not in described:
                    described[id(error)] = describe(error)
                code, message = described[id(error)]
                add(index=index, code=code.value[0], error=message)
                counts[code.name] += 1
        return response


def register(server, enqueuer, counts=None):
    return add_servicer(
        server,
        jobs_pb2.DESCRIPTOR.services_by_name["BackgroundJobs"],
        BackgroundJobsServicer(enqueuer, counts),
    )

