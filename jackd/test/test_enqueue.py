"""
The enqueue path, from request to backend or scheduler, on the real memory
store and scheduler with a recording backend.
"""

from google.protobuf.timestamp_pb2 import Timestamp
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jack.jobs_pb2 import EnqueueBulkRequest, EnqueueRequest
from jack.job_pb2 import Job, Queue
from jackd.admin import Admin
from jackd.enqueue import Enqueuer
from jackd.errors import InvalidArgument, NotFound, Unavailable
from jackd.ids import job_id_time
from jackd.scheduler import Scheduler
from jackd.scheduler.memory import MemoryScheduleStore
from jackd.storage.memory import MemoryConfigStore
from jackd.testing.backends import RecordingBackend
from jackd.validation import JOB_TYPE_NAME_RULE, Limits

NOW = 1_796_300_000.25  # 2026-12-03T12:13:20.25Z
NOW_NS = 1_796_300_000_250_000_000


def at(ns):
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


class EnqueueTestCase(SynchronousTestCase):
    limits = Limits()

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(NOW)
        self.store = MemoryConfigStore()
        self.backend = RecordingBackend()
        self.schedule = MemoryScheduleStore()
        self.scheduler = Scheduler(self.schedule, self.backend, self.clock)
        self.scheduler.startService()
        self.enqueuer = Enqueuer(
            self.store, self.backend, self.scheduler, self.limits, self.clock
        )
        admin = Admin(self.store, self.clock)
        self.producer_id = self.successResultOf(
            admin.create_producer("billing", "")
        ).producer_id
        for name, queue, retries in [
            ("charge", Queue.QUEUE_IMMEDIATE, 0),
            ("invoice", Queue.QUEUE_HIGH, 5),
            ("report", Queue.QUEUE_MEDIUM, None),
            ("cleanup", Queue.QUEUE_LOW, 1),
        ]:
            self.successResultOf(
                admin.create_job_type(self.producer_id, name, queue, retries, "")
            )

    def request(self, job_type="charge", **fields):
        fields.setdefault("producer_id", self.producer_id)
        return EnqueueRequest(job_type=job_type, **fields)

    def refused(self, request, error_class):
        return self.failureResultOf(self.enqueuer.enqueue(request), error_class).value


class EnqueueTests(EnqueueTestCase):
    def test_job_envelope(self):
        """An accepted job reaches the backend with every envelope field set."""
        job_id = self.successResultOf(
            self.enqueuer.enqueue(
                self.request("invoice", payload=b"\x00pay", trace_id="trace-1")
            )
        )
        expected = Job(
            job_id=job_id,
            producer_id=self.producer_id,
            job_type="invoice",
            queue=Queue.QUEUE_HIGH,
            payload=b"\x00pay",
            trace_id="trace-1",
            max_retries=5,
            run_at=at(NOW_NS),
            enqueued_at=at(NOW_NS),
        )
        self.assertEqual(self.backend.published, [expected])
        self.assertEqual(job_id_time(job_id).timestamp(), 1_796_300_000.25)

    def test_job_type_picks_queue(self):
        """The job type decides the queue and the retries (3 by default)."""
        for name in ["charge", "invoice", "report", "cleanup"]:
            self.successResultOf(self.enqueuer.enqueue(self.request(name)))
        self.assertEqual(
            [(job.queue, job.max_retries) for job in self.backend.published],
            [
                (Queue.QUEUE_IMMEDIATE, 0),
                (Queue.QUEUE_HIGH, 5),
                (Queue.QUEUE_MEDIUM, 3),
                (Queue.QUEUE_LOW, 1),
            ],
        )

    def test_ids_unique_and_sorted(self):
        """Job ids are unique and sort in enqueue order."""
        ids = []
        for _ in range(50):
            ids.append(self.successResultOf(self.enqueuer.enqueue(self.request())))
            self.clock.advance(0.0004)
        self.assertEqual(ids, sorted(set(ids)))

    def test_missing_fields(self):
        """A missing producer_id or job_type is INVALID_ARGUMENT naming it."""
        self.assertEqual(
            self.refused(self.request(producer_id=""), InvalidArgument).message,
            "producer_id: is required",
        )
        self.assertEqual(
            self.refused(self.request(""), InvalidArgument).message,
            "job_type: is required",
        )
        self.assertEqual(self.backend.published, [])

    def test_malformed_ids(self):
        """An overlong producer_id or a job_type outside the name rules is INVALID_ARGUMENT."""
        self.assertEqual(
            self.refused(self.request(producer_id="p" * 129), InvalidArgument).field,
            "producer_id",
        )
        for name in ["has space", "a/b", "-lead", "x" * 129, "naïve"]:
            self.assertEqual(
                self.refused(self.request(name), InvalidArgument).field, "job_type"
            )

    def test_unknown(self):
        """An unknown producer or job type is NOT_FOUND naming the field."""
        self.assertEqual(
            self.refused(self.request(producer_id="prod_nobody"), NotFound).message,
            "producer_id: no producer 'prod_nobody' is registered",
        )
        self.assertEqual(
            self.refused(self.request("unheard-of"), NotFound).message,
            f"job_type: producer '{self.producer_id}' has no job type 'unheard-of'",
        )

    def test_payload_limit(self):
        """A payload of MAX_PAYLOAD_BYTES passes; one byte more is INVALID_ARGUMENT."""
        limit = self.limits.max_payload_bytes
        self.successResultOf(self.enqueuer.enqueue(self.request(payload=b"x" * limit)))
        error = self.refused(self.request(payload=b"x" * (limit + 1)), InvalidArgument)
        self.assertEqual(
            error.message,
            f"payload: is {limit + 1} bytes; at most {limit} bytes are allowed",
        )

    def test_trace_id_limit(self):
        """trace_id may hold 1024 bytes of UTF-8, not more."""
        self.successResultOf(self.enqueuer.enqueue(self.request(trace_id="t" * 1024)))
        self.assertEqual(
            self.refused(self.request(trace_id="é" * 513), InvalidArgument).message,
            "trace_id: is longer than 1024 bytes",
        )

    def test_invalid_run_at(self):
        """A run_at outside Timestamp's range is INVALID_ARGUMENT naming run_at."""
        for seconds, nanos in [(253402300800, 0), (-62135596801, 0), (0, -1), (0, 10**9)]:
            stamp = Timestamp(seconds=seconds, nanos=nanos)
            error = self.refused(self.request(run_at=stamp), InvalidArgument)
            self.assertTrue(error.message.startswith("run_at: is not a valid Timestamp"))

    def test_run_at_in_the_past(self):
        """A run_at in the past is published at once, due now."""
        self.successResultOf(
            self.enqueuer.enqueue(self.request(run_at=at(NOW_NS - 10**9)))
        )
        [job] = self.backend.published
        self.assertEqual(job.run_at, at(NOW_NS))

    def test_run_at_in_the_future(self):
        """A future run_at is held, answered at once, and published when due."""
        run_at = at(NOW_NS + 30 * 10**9)
        job_id = self.successResultOf(self.enqueuer.enqueue(self.request(run_at=run_at)))
        self.assertEqual(self.backend.published, [])
        self.assertEqual(self.successResultOf(self.schedule.count()), 1)
        self.clock.advance(29.999)
        self.assertEqual(self.backend.published, [])
        self.clock.advance(0.001)
        [job] = self.backend.published
        self.assertEqual((job.job_id, job.run_at, job.enqueued_at), (job_id, run_at, at(NOW_NS)))

    def test_backend_refuses(self):
        """The backend's refusal is the caller's error."""
        self.backend.refuse = lambda job: Unavailable("queue backend unreachable")
        self.assertEqual(
            self.refused(self.request(), Unavailable).message, "queue backend unreachable"
        )

    def test_backend_validates_before_accepting(self):
        """
        A job the backend could never take (its C{validate} raises) is
        refused with that error before anything is published or held,
        for a job due now and for one due later alike.
        """
        self.backend.invalid = lambda job: InvalidArgument("payload", "too big for the broker")
        later = at(NOW_NS + 60 * 10**9)
        for request in (self.request(), self.request(run_at=later)):
            error = self.refused(request, InvalidArgument)
            self.assertEqual(error.field, "payload")
        self.assertEqual(self.backend.calls, [])
        self.assertEqual(self.successResultOf(self.schedule.count()), 0)

    def test_waits_for_backend(self):
        """The answer waits until the backend confirmed the job."""
        from twisted.internet.defer import Deferred

        self.backend.gate = Deferred()
        d = self.enqueuer.enqueue(self.request())
        self.assertNoResult(d)
        self.backend.gate.callback(None)
        self.assertEqual(self.successResultOf(d), self.backend.published[0].job_id)


class EnqueueBulkTests(EnqueueTestCase):
    limits = Limits(max_payload_bytes=100, max_bulk_jobs=5, max_bulk_bytes=1000)

    def bulk(self, *requests):
        return self.enqueuer.enqueue_bulk(EnqueueBulkRequest(jobs=requests))

    def test_mixed(self):
        """Each job gets its own outcome, in request order; bad ones fail alone."""
        later = at(NOW_NS + 60 * 10**9)
        outcomes = self.successResultOf(
            self.bulk(
                self.request("charge"),
                self.request(""),
                self.request("unknown"),
                self.request("report", run_at=later),
                self.request("invoice", payload=b"x" * 101),
            )
        )
        self.assertEqual(
            [(bool(job_id), type(error).__name__) for job_id, error in outcomes],
            [(True, "NoneType"), (False, "InvalidArgument"), (False, "NotFound"),
             (True, "NoneType"), (False, "InvalidArgument")],
        )
        self.assertEqual(outcomes[4][1].field, "payload")
        self.assertEqual([job.job_id for job in self.backend.published], [outcomes[0][0]])
        self.clock.advance(60)
        self.assertEqual(
            [job.job_id for job in self.backend.published], [outcomes[0][0], outcomes[3][0]]
        )

    def test_jobs_as_enqueue_makes_them(self):
        """
        A bulk makes each job as Enqueue would: the envelope of its job type
        and its own payload, trace_id and run_at, with ids unique and
        ascending in request order.
        """
        later = at(NOW_NS + 60 * 10**9)
        requests = [
            self.request("invoice", payload=b"\x00pay", trace_id="trace-1"),
            self.request("charge"),
            self.request("invoice", run_at=later, payload=b"l"),
            self.request("invoice", payload=b"2", run_at=at(NOW_NS - 10**9)),
            self.request("charge", trace_id="t2"),
        ]
        outcomes = self.successResultOf(self.bulk(*requests))
        job_ids = [job_id for job_id, _ in outcomes]
        self.assertEqual(job_ids, sorted(set(job_ids)))
        self.clock.advance(60)
        self.assertEqual(
            sorted(self.backend.published, key=lambda job: job.job_id),
            [
                Job(
                    job_id=job_id,
                    producer_id=self.producer_id,
                    job_type=request.job_type,
                    queue={"invoice": Queue.QUEUE_HIGH, "charge": Queue.QUEUE_IMMEDIATE}[
                        request.job_type],
                    max_retries={"invoice": 5, "charge": 0}[request.job_type],
                    payload=request.payload,
                    trace_id=request.trace_id,
                    run_at=later if request.run_at == later else at(NOW_NS),
                    enqueued_at=at(NOW_NS),
                )
                for job_id, request in zip(job_ids, requests)
            ],
        )

    def test_checks_every_item(self):
        """
        Every item is checked on its own, also when others of the same
        producer and job type passed: each fails with its own error.
        """
        outcomes = self.successResultOf(
            self.bulk(
                self.request("charge"),
                self.request("charge", payload=b"x" * 101),
                self.request("bad name"),
                self.request("bad name", payload=b"x" * 101),
                self.request("charge", run_at=Timestamp(seconds=0, nanos=10**9)),
            )
        )
        self.assertIsNone(outcomes[0][1])
        self.assertEqual(
            [error.message for _, error in outcomes[1:]],
            [
                "payload: is 101 bytes; at most 100 bytes are allowed",
                "job_type: " + JOB_TYPE_NAME_RULE,
                "job_type: " + JOB_TYPE_NAME_RULE,
                "run_at: is not a valid Timestamp: nanos must be 0 to 999999999",
            ],
        )
        self.assertIsNot(outcomes[2][1], outcomes[3][1])

    def test_published_together(self):
        """The jobs due now are handed to the backend in one call."""
        outcomes = self.successResultOf(
            self.bulk(*[self.request(name) for name in ["charge", "invoice", "charge", "cleanup"]])
        )
        self.assertEqual(self.backend.calls, [4])
        self.assertEqual([job.job_id for job in self.backend.published],
                         [job_id for job_id, _ in outcomes])

    def test_backend_validates_each(self):
        """
        In a bulk, a job the backend's C{validate} refuses fails alone,
        due now or later; its neighbours are published or held.
        """
        self.backend.invalid = lambda job: (
            InvalidArgument("trace_id", "too long for the broker")
            if job.trace_id == "bad" else None
        )
        later = at(NOW_NS + 60 * 10**9)
        outcomes = self.successResultOf(
            self.bulk(
                self.request("charge", trace_id="bad"),
                self.request("charge"),
                self.request("report", run_at=later, trace_id="bad"),
                self.request("report", run_at=later),
            )
        )
        self.assertEqual(
            [(bool(job_id), type(error).__name__) for job_id, error in outcomes],
            [(False, "InvalidArgument"), (True, "NoneType"),
             (False, "InvalidArgument"), (True, "NoneType")],
        )
        self.assertEqual([job.job_id for job in self.backend.published], [outcomes[1][0]])
        self.assertEqual(self.successResultOf(self.schedule.count()), 1)

    def test_backend_refuses_some(self):
        """A job the backend refuses fails alone; its neighbours succeed."""
        self.backend.refuse = lambda job: (
            Unavailable("topic unreachable") if job.job_type == "invoice" else None
        )
        outcomes = self.successResultOf(
            self.bulk(self.request("charge"), self.request("invoice"), self.request("report"))
        )
        self.assertEqual(outcomes[1], ("", Unavailable("topic unreachable")))
        self.assertTrue(outcomes[0][0] and outcomes[2][0])

    def test_publish_fails_as_a_whole(self):
        """
        A publish call that fails as a whole fails the jobs due now, each with
        the error, while the jobs the scheduler took keep their ids.
        """
        self.backend.fail_with = Unavailable("broker unreachable")
        later = at(NOW_NS + 60 * 10**9)
        outcomes = self.successResultOf(
            self.bulk(self.request("charge"), self.request("report", run_at=later))
        )
        self.assertEqual(outcomes[0], ("", Unavailable("broker unreachable")))
        self.assertTrue(outcomes[1][0])
        self.assertIsNone(outcomes[1][1])
        self.assertEqual(self.successResultOf(self.schedule.count()), 1)

    def test_empty(self):
        """An empty bulk is INVALID_ARGUMENT naming jobs."""
        error = self.failureResultOf(self.bulk(), InvalidArgument).value
        self.assertEqual(error.message, "jobs: must hold at least one job")

    def test_too_many(self):
        """More than MAX_BULK_JOBS jobs is INVALID_ARGUMENT; exactly that many pass."""
        self.successResultOf(self.bulk(*[self.request()] * 5))
        error = self.failureResultOf(self.bulk(*[self.request()] * 6), InvalidArgument).value
        self.assertEqual(error.message, "jobs: holds 6 jobs; at most 5 are allowed per call")

    def test_too_big(self):
        """A bulk over MAX_BULK_BYTES encoded is INVALID_ARGUMENT; at the limit it passes."""

        def bulk_with_trace(length):
            one = self.request(payload=b"x" * 100)
            last = self.request(payload=b"x" * 100, trace_id="t" * length)
            return EnqueueBulkRequest(jobs=[one] * 4 + [last])

        # The trace_id length that makes the request exactly 1000 bytes.
        length = next(n for n in range(1000) if bulk_with_trace(n).ByteSize() == 1000)
        self.successResultOf(self.enqueuer.enqueue_bulk(bulk_with_trace(length)))
        over = bulk_with_trace(length + 1)
        self.assertEqual(over.ByteSize(), 1001)
        error = self.failureResultOf(self.enqueuer.enqueue_bulk(over), InvalidArgument).value
        self.assertEqual(
            error.message, "jobs: are 1001 bytes encoded; at most 1000 bytes are allowed per call"
        )
