"""
The gRPC edge, in process: the whole service tree on a real port, called
with a grpc.aio client on the same asyncio loop.
"""

import asyncio
import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jack import admin_pb2, admin_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from jackd import errors
from jackd.api.edge import status_code
from jackd.storage.memory import MemoryConfigStore
from jackd.tap import Options, build_service
from jackd.testing.aio import as_deferred, asyncio_test
from jackd.testing.backends import RecordingBackend

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StatusCodeTests(SynchronousTestCase):
    def test_every_error_has_a_code(self):
        """Every JackError subclass maps to the gRPC status code it names."""
        classes = [
            cls for cls in vars(errors).values()
            if isinstance(cls, type) and issubclass(cls, errors.JackError)
            and cls is not errors.JackError and not cls.__name__.startswith("_")
        ]
        self.assertEqual(len(classes), 6)
        for cls in classes:
            self.assertEqual(status_code(cls.__new__(cls)).name, cls.code)


class BuggyStore(MemoryConfigStore):
    """A store whose job type lookup has a bug (raises a non-JackError)."""

    def get_job_type(self, producer_id, name):
        if name == "buggy":
            raise ZeroDivisionError("a bug")
        return super().get_job_type(producer_id, name)


class BuggyBackend(RecordingBackend):
    """A recording backend whose check can be made to raise (a bug)."""

    check_raises = False

    def check(self):
        if self.check_raises:
            raise ZeroDivisionError("a bug in check")
        return super().check()


class ApiTestCase(TestCase):
    argv = ["--max-bulk-jobs", "10", "--max-bulk-bytes", "20KiB", "--max-payload-bytes", "4KiB"]

    @inlineCallbacks
    def setUp(self):
        options = Options(environ={})
        options.parseOptions(["--grpc-port", "0", *self.argv])
        self.backend = BuggyBackend()
        self.root = build_service(options, reactor, store=BuggyStore(), backend=self.backend)
        self.root.startService()
        server = self.root.getServiceNamed("grpc")
        self.assertTrue((yield self.root.ready))
        self.stopped = False
        self.addCleanup(self.stop)
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        self.addCleanup(lambda: as_deferred(self.channel.close()))
        self.jobs = jobs_pb2_grpc.BackgroundJobsStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def stop(self):
        if not self.stopped:
            self.stopped = True
            return self.root.stopService()

    async def registered(self):
        producer = (
            await self.admin.CreateProducer(admin_pb2.CreateProducerRequest(name="shop"))
        ).producer
        for name in ["email", "buggy"]:
            await self.admin.CreateJobType(
                admin_pb2.CreateJobTypeRequest(producer_id=producer.producer_id, name=name)
            )
        return producer.producer_id

    async def status_of(self, call):
        try:
            await call
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details()
        return grpc.StatusCode.OK, ""


class EnqueueApiTests(ApiTestCase):
    @asyncio_test
    async def test_enqueue(self):
        """Enqueue answers the job id the backend received."""
        producer_id = await self.registered()
        response = await self.jobs.Enqueue(
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email", payload=b"p")
        )
        self.assertEqual([job.job_id for job in self.backend.published], [response.job_id])

    @asyncio_test
    async def test_status_codes(self):
        """Domain errors arrive as their status codes with field-naming messages."""
        producer_id = await self.registered()
        cases = [
            (jobs_pb2.EnqueueRequest(job_type="email"),
             (grpc.StatusCode.INVALID_ARGUMENT, "producer_id: is required")),
            (jobs_pb2.EnqueueRequest(producer_id="prod_none", job_type="email"),
             (grpc.StatusCode.NOT_FOUND, "producer_id: no producer 'prod_none' is registered")),
            (jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email", payload=b"x" * 4097),
             (grpc.StatusCode.INVALID_ARGUMENT,
              "payload: is 4097 bytes; at most 4096 bytes are allowed")),
        ]
        for request, expected in cases:
            self.assertEqual(await self.status_of(self.jobs.Enqueue(request)), expected)
        self.assertEqual(
            await self.status_of(
                self.admin.CreateProducer(admin_pb2.CreateProducerRequest(name="shop"))
            ),
            (grpc.StatusCode.ALREADY_EXISTS, "name: a producer named 'shop' already exists"),
        )

    @asyncio_test
    async def test_bug_is_internal(self):
        """A bug answers INTERNAL without details of the bug, and is logged."""
        producer_id = await self.registered()
        status = await self.status_of(
            self.jobs.Enqueue(jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="buggy"))
        )
        self.assertEqual(
            status, (grpc.StatusCode.INTERNAL, "internal error: Jack logged the details")
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @asyncio_test
    async def test_bulk_codes(self):
        """EnqueueBulk answers each item's status code number and message, in order."""
        producer_id = await self.registered()
        items = [
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email"),
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="nope"),
            jobs_pb2.EnqueueRequest(producer_id=producer_id),
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="buggy"),
            jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email"),
        ]
        response = await self.jobs.EnqueueBulk(jobs_pb2.EnqueueBulkRequest(jobs=items))
        self.assertEqual(
            [(r.index, bool(r.job_id), r.code, r.error) for r in response.results],
            [
                (0, True, 0, ""),
                (1, False, 5, f"job_type: producer '{producer_id}' has no job type 'nope'"),
                (2, False, 3, "job_type: is required"),
                (3, False, 13, "internal error: Jack logged the details"),
                (4, True, 0, ""),
            ],
        )
        self.assertEqual(
            [job.job_id for job in self.backend.published],
            [response.results[0].job_id, response.results[4].job_id],
        )
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    @asyncio_test
    async def test_malformed_request(self):
        """A request that does not decode (a string that is not UTF-8) is INVALID_ARGUMENT."""
        for method, data in [
            ("/jack.AdminService/CreateProducer", b"\x0a\x03\xff\xfeA"),
            ("/jack.BackgroundJobs/Enqueue", b"\x0a\x02\xed\xa0"),
            ("/jack.BackgroundJobs/EnqueueBulk", b"\x0a\xff"),
        ]:
            call = self.channel.unary_unary(method)(data)
            code, message = await self.status_of(call)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertTrue(message.startswith("request: not a valid jack."), message)

    @asyncio_test
    async def test_bulk_limits(self):
        """Over MAX_BULK_BYTES is INVALID_ARGUMENT; past the receive limit gRPC says RESOURCE_EXHAUSTED."""
        producer_id = await self.registered()

        def bulk(count, size):
            return jobs_pb2.EnqueueBulkRequest(
                jobs=[jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email",
                                              payload=b"x" * size)] * count
            )

        code, message = await self.status_of(self.jobs.EnqueueBulk(bulk(6, 4000)))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertRegex(message, r"^jobs: are 24\d\d\d bytes encoded; at most 20480 bytes")
        code, _ = await self.status_of(self.jobs.EnqueueBulk(bulk(11, 1)))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)
        code, _ = await self.status_of(self.jobs.EnqueueBulk(bulk(10, 100_000)))
        self.assertEqual(code, grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertEqual(self.backend.published, [])


class AdminApiTests(ApiTestCase):
    @asyncio_test
    async def test_round_trip(self):
        """Producers and job types created over gRPC come back from Get and List."""
        producer_id = await self.registered()
        got = await self.admin.GetProducer(admin_pb2.GetProducerRequest(producer_id=producer_id))
        self.assertEqual(got.producer.name, "shop")
        listed = await self.admin.ListProducers(admin_pb2.ListProducersRequest())
        self.assertEqual([p.producer_id for p in listed.producers], [producer_id])
        types = await self.admin.ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer_id, page_size=1)
        )
        self.assertEqual([t.name for t in types.job_types], ["buggy"])
        rest = await self.admin.ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer_id, page_token=types.next_page_token)
        )
        self.assertEqual(([t.name for t in rest.job_types], rest.next_page_token), (["email"], ""))

    @asyncio_test
    async def test_max_retries_presence(self):
        """CreateJobType tells an absent max_retries (3) from an explicit 0."""
        producer_id = await self.registered()
        zero = await self.admin.CreateJobType(
            admin_pb2.CreateJobTypeRequest(producer_id=producer_id, name="z", max_retries=0)
        )
        self.assertEqual(zero.job_type.max_retries, 0)
        default = await self.admin.CreateJobType(
            admin_pb2.CreateJobTypeRequest(producer_id=producer_id, name="d")
        )
        self.assertEqual(default.job_type.max_retries, 3)


class HealthAndReflectionTests(ApiTestCase):
    async def statuses(self):
        names = ["", "jack.BackgroundJobs", "jack.AdminService"]
        return [
            (await self.health.Check(health_pb2.HealthCheckRequest(service=name))).status
            for name in names
        ]

    @asyncio_test
    async def test_serving(self):
        """Once started, "" and both Jack services are SERVING; others are NOT_FOUND."""
        self.assertEqual(await self.statuses(), [SERVING] * 3)
        code, _ = await self.status_of(
            self.health.Check(health_pb2.HealthCheckRequest(service="jack.Nope"))
        )
        self.assertEqual(code, grpc.StatusCode.NOT_FOUND)

    @asyncio_test
    async def test_watch(self):
        """
        Watch answers the current status at once, then each change; a
        service nobody registered is SERVICE_UNKNOWN (the protocol's answer).
        """
        unknown = self.health.Watch(health_pb2.HealthCheckRequest(service="jack.Nope"))
        self.assertEqual(
            (await unknown.read()).status, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        )
        unknown.cancel()
        watch = self.health.Watch(health_pb2.HealthCheckRequest(service=""))
        self.assertEqual((await watch.read()).status, SERVING)
        health_service = self.root.getServiceNamed("health")
        self.backend.healthy = False
        await health_service.check_now().asFuture(asyncio.get_running_loop())
        self.assertEqual((await watch.read()).status, NOT_SERVING)
        watch.cancel()

    @asyncio_test
    async def test_backend_down(self):
        """A backend that fails its check makes "" and BackgroundJobs NOT_SERVING, not Admin."""
        health_service = self.root.getServiceNamed("health")
        self.backend.healthy = False
        await health_service.check_now().asFuture(asyncio.get_running_loop())
        self.assertEqual(await self.statuses(), [NOT_SERVING, NOT_SERVING, SERVING])
        self.backend.healthy = True
        await health_service.check_now().asFuture(asyncio.get_running_loop())
        self.assertEqual(await self.statuses(), [SERVING] * 3)

    @asyncio_test
    async def test_check_raises(self):
        """A check that raises counts as failed, is logged, and checking goes on."""
        health_service = self.root.getServiceNamed("health")
        self.backend.check_raises = True
        await health_service.check_now().asFuture(asyncio.get_running_loop())
        self.assertEqual(await self.statuses(), [NOT_SERVING, NOT_SERVING, SERVING])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.backend.check_raises = False
        await health_service.check_now().asFuture(asyncio.get_running_loop())
        self.assertEqual(await self.statuses(), [SERVING] * 3)

    @asyncio_test
    async def test_slow_check_holds_back_no_other(self):
        """
        A check that does not answer (a config storage hanging) counts as
        failed after the check timeout, and meanwhile the other check's
        statuses are published as soon as it answers.
        """
        health_service = self.root.getServiceNamed("health")
        health_service.check_timeout = 1.0
        hanging = Deferred()
        store = self.root.getServiceNamed("storage")
        store.check = lambda: hanging
        health_service._checks["jack.AdminService"] = store.check
        self.backend.healthy = False
        checking = health_service.check_now()
        loop = asyncio.get_running_loop()
        for _ in range(40):  # the backend's answer is published at once
            if (await self.statuses())[:2] == [NOT_SERVING, NOT_SERVING]:
                break
            await asyncio.sleep(0.01)
        self.assertEqual(await self.statuses(), [NOT_SERVING, NOT_SERVING, SERVING])
        self.assertFalse(checking.called)
        await checking.asFuture(loop)
        self.assertEqual(await self.statuses(), [NOT_SERVING, NOT_SERVING, NOT_SERVING])

    @asyncio_test
    async def test_reflection(self):
        """Reflection v1 and v1alpha both list every service served."""
        expected = sorted([
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "jack.AdminService",
            "jack.BackgroundJobs",
        ])
        for method in [
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]:
            call = self.channel.stream_stream(
                method,
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            responses = [r async for r in call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
            names = sorted(s.name for s in responses[0].list_services_response.service)
            self.assertEqual(names, expected)
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        call = stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="jack.BackgroundJobs")
        ]))
        [response] = [r async for r in call]
        self.assertTrue(response.file_descriptor_response.file_descriptor_proto)


class ShutdownTests(ApiTestCase):
    # A grace period longer than the tests' timeout: a stop that waits for
    # it makes the test fail.
    argv = ["--drain-delay", "0.5s", "--shutdown-grace", "60s"]
    timeout = 20

    @asyncio_test
    async def test_drain(self):
        """
        At stop, health goes NOT_SERVING at once while calls still work during
        the drain delay; a call in flight finishes; then new calls are refused.
        """
        producer_id = await self.registered()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email")
        self.backend.gate = Deferred()
        in_flight = asyncio.ensure_future(self.jobs.Enqueue(request))
        while not self.backend.calls:
            await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(self.stop().asFuture(asyncio.get_running_loop()))
        await asyncio.sleep(0.1)
        self.assertEqual(await self.statuses_now(), NOT_SERVING)
        await asyncio.sleep(0.6)
        code, _ = await self.status_of(self.jobs.Enqueue(request, timeout=2))
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE)
        self.assertFalse(in_flight.done())
        self.backend.gate.callback(None)
        response = await in_flight
        self.assertEqual(self.backend.published[0].job_id, response.job_id)
        await stopping

    @asyncio_test
    async def test_watchers_do_not_hold_shutdown(self):
        """
        A health Watch stream sees NOT_SERVING at shutdown and ends after the
        drain delay, so it does not hold the stop for the grace period.
        """
        watch = self.health.Watch(health_pb2.HealthCheckRequest(service=""))
        seen = [(await watch.read()).status]
        stopping = self.stop()
        while (response := await watch.read()) is not grpc.aio.EOF:
            seen.append(response.status)
        self.assertEqual(seen, [SERVING, NOT_SERVING])
        self.assertEqual(await watch.code(), grpc.StatusCode.OK)
        await stopping.asFuture(asyncio.get_running_loop())

    async def statuses_now(self):
        return (await self.health.Check(health_pb2.HealthCheckRequest(service=""))).status


class ThreadBoundTests(ApiTestCase):
    argv = ["--grpc-threads", "2"]
    timeout = 20

    @asyncio_test
    async def test_calls_beyond_the_threads_wait(self):
        """
        GRPC_THREADS bounds the calls Jack works on at once: with 2 threads
        and 5 calls held by the backend, 2 reach it; the others wait for a
        thread, and all of them are answered once the backend answers.
        """
        producer_id = await self.registered()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email")
        self.backend.gate = Deferred()
        calls = [asyncio.ensure_future(self.jobs.Enqueue(request)) for _ in range(5)]
        while len(self.backend.calls) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        self.assertEqual(len(self.backend.calls), 2)
        self.backend.gate.callback(None)
        self.backend.gate = None
        responses = await asyncio.gather(*calls)
        self.assertEqual(
            sorted(job.job_id for job in self.backend.published),
            sorted(response.job_id for response in responses),
        )


class MaxCallsTests(ApiTestCase):
    argv = ["--grpc-threads", "2", "--grpc-max-calls", "3"]
    timeout = 20

    @asyncio_test
    async def test_calls_beyond_the_bound_are_refused(self):
        """
        GRPC_MAX_CALLS bounds the calls held at once: with 2 threads and a
        bound of 3, of 5 calls held by the backend 2 are worked on, 1 waits
        for a thread and 2 are refused at once with RESOURCE_EXHAUSTED.
        """
        producer_id = await self.registered()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email")
        self.backend.gate = Deferred()
        held = []
        for _ in range(3):
            held.append(asyncio.ensure_future(self.status_of(self.jobs.Enqueue(request))))
            await asyncio.sleep(0.1)
        refused = [await self.status_of(self.jobs.Enqueue(request, timeout=5)) for _ in range(2)]
        self.assertEqual([code for code, _ in refused], [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2)
        self.backend.gate.callback(None)
        self.backend.gate = None
        self.assertEqual([code for code, _ in await asyncio.gather(*held)], [grpc.StatusCode.OK] * 3)
        self.assertEqual(len(self.backend.published), 3)


class GraceTests(ApiTestCase):
    argv = ["--shutdown-grace", "0.5s"]
    timeout = 20

    @asyncio_test
    async def test_grace_ends_calls_and_frees_their_threads(self):
        """
        A call still unanswered when the grace period ends is ended by gRPC,
        and its thread is released: the stop finishes and no gRPC handler
        thread is left waiting (one would keep the process from exiting).
        """
        producer_id = await self.registered()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email")
        self.backend.gate = Deferred()  # never fired
        in_flight = asyncio.ensure_future(self.status_of(self.jobs.Enqueue(request)))
        while not self.backend.calls:
            await asyncio.sleep(0.01)
        await self.stop().asFuture(asyncio.get_running_loop())
        code, _ = await in_flight
        self.assertNotEqual(code, grpc.StatusCode.OK)
        for _ in range(100):
            handlers = [t for t in threading.enumerate() if t.name.startswith("grpc")]
            if not handlers:
                break
            await asyncio.sleep(0.05)
        self.assertEqual(handlers, [])


class StarvationTests(ApiTestCase):
    argv = ["--grpc-threads", "2"]
    timeout = 20

    @asyncio_test
    async def test_health_check_answers_while_calls_are_held(self):
        """
        Health Check must answer while every gRPC thread waits for a slow
        backend (a readiness/liveness probe failing here takes a busy
        replica out, or gets it restarted). grpc.aio answered it at once.
        """
        producer_id = await self.registered()
        request = jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email")
        self.backend.gate = Deferred()
        held = [asyncio.ensure_future(self.jobs.Enqueue(request)) for _ in range(2)]
        while len(self.backend.calls) < 2:
            await asyncio.sleep(0.01)
        try:
            status = await self.status_of(
                self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2))
            self.assertEqual(status, (grpc.StatusCode.OK, ""))
        finally:
            self.backend.gate.callback(None)
            self.backend.gate = None
            await asyncio.gather(*held)

    @asyncio_test
    async def test_open_reflection_streams_do_not_starve_enqueue(self):
        """
        Reflection streams a client keeps open (grpcurl/grpcui/Postman
        sessions) each hold a gRPC thread for as long as they stay open:
        GRPC_THREADS of them and no Enqueue is ever served.
        """
        producer_id = await self.registered()
        call = self.channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        streams = []
        for _ in range(2):
            stream = call()
            await stream.write(reflection_pb2.ServerReflectionRequest(list_services=""))
            await stream.read()  # answered; the stream stays open, as a UI's does
            streams.append(stream)
        try:
            status = await self.status_of(self.jobs.Enqueue(
                jobs_pb2.EnqueueRequest(producer_id=producer_id, job_type="email"), timeout=3))
            self.assertEqual(status, (grpc.StatusCode.OK, ""))
        finally:
            for stream in streams:
                stream.cancel()
