"""The ``jack.BackgroundJobs`` servicer."""

from collections import Counter

from jack import jobs_pb2
from jackd.api.edge import add_servicer, describe
from jackd.errors import JackError


class BackgroundJobsServicer:
    """
    Deferred-based handlers, run on the reactor thread (see
    ``jackd.api.edge``).

    @param enqueuer: a ``jackd.enqueue.Enqueuer``.
    @param counts: a C{collections.Counter} counting each job's outcome by
        status code name, C{"OK"} when accepted (the manhole's C{stats()}).
    """

    def __init__(self, enqueuer, counts=None):
        self._enqueuer = enqueuer
        self._counts = Counter() if counts is None else counts

    def Enqueue(self, request):
        d = self._enqueuer.enqueue(request)
        d.addCallbacks(self._accepted, self._refused)
        return d

    def _accepted(self, job_id):
        self._counts["OK"] += 1
        return jobs_pb2.EnqueueResponse(job_id=job_id)

    def _refused(self, failure):
        if failure.check(JackError):
            self._counts[failure.value.code] += 1
        return failure

    def EnqueueBulk(self, request):
        d = self._enqueuer.enqueue_bulk(request)
        d.addCallbacks(self._bulk_response, self._refused)
        return d

    def _bulk_response(self, outcomes):
        counts = self._counts
        response = jobs_pb2.EnqueueBulkResponse()
        add = response.results.add
        described = {}  # one failed hand-over fails many jobs: log it once
        accepted = 0
        for index, (job_id, error) in enumerate(outcomes):
            if error is None:
                add(index=index, job_id=job_id)
                accepted += 1
            else:
                if id(error) not in described:
                    described[id(error)] = describe(error)
                code, message = described[id(error)]
                add(index=index, code=code.value[0], error=message)
                counts[code.name] += 1
        if accepted:  # no "OK": 0 entry in stats()
            counts["OK"] += accepted
        return response


def register(server, hop, enqueuer, counts=None):
    return add_servicer(
        server,
        jobs_pb2.DESCRIPTOR.services_by_name["BackgroundJobs"],
        BackgroundJobsServicer(enqueuer, counts),
        hop,
    )
