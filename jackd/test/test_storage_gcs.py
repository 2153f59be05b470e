"""
Tests for L{jackd.storage.gcs.GCSConfigStore}, against fsouza's
fake-gcs-server (which enforces generation preconditions) through the
official google-cloud-storage client.
"""

import json
import math
import os
import time
from urllib.parse import unquote

from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jack.job_pb2 import Queue
from jackd.errors import AlreadyExists, ConfigError, NotFound, Unavailable
from jackd.ids import new_producer_id
from jackd.storage import gcs as gcs_module
from jackd.storage.gcs import (
    CLAIM,
    JOB_TYPE,
    PRODUCER,
    GCSConfigStore,
    Layout,
    check_prefix,
    encode_name,
    to_json,
)
from jackd.test.store_mixin import (
    AWKWARD_NAMES,
    ConfigStoreTestsMixin,
    make_job_type,
    make_producer,
)
from jackd.testing.daemon import free_port
from jackd.testing.gcs import own_gcs, shared_gcs


@inlineCallbacks
def started_store(testCase, gcs, bucket, prefix="jack", **kwargs):
    """
    A L{GCSConfigStore} on C{bucket} of C{gcs}, started (its snapshot
    loaded), and stopped when the test ends.
    """
    kwargs.setdefault("client_factory", gcs.client)
    store = GCSConfigStore(bucket, prefix, **kwargs)
    testCase.addCleanup(store.stopService)
    yield store.startService()
    return store


def outcomes(results):
    """
    The sorted outcomes of a C{DeferredList}: C{"ok"} or the error's class name.
    """
    return sorted("ok" if ok else type(value.value).__name__ for ok, value in results)


class GCSConfigStoreTests(ConfigStoreTestsMixin, TestCase):
    """
    L{GCSConfigStore} passes the ``IConfigStore`` conformance suite, each
    test on a bucket of its own.
    """

    def make_store(self):
        gcs = shared_gcs(self)
        return started_store(self, gcs, gcs.new_bucket())


class KeyTests(SynchronousTestCase):
    """
    Object keys: where each record lives, and how names are encoded.
    """

    def test_unreservedCharactersKept(self):
        """
        ASCII letters, digits, C{-}, C{_} and C{~} stay as they are, so the
        usual names read plainly in a listing.
        """
        self.assertEqual(encode_name("Send-invoice_2~x"), "Send-invoice_2~x")
        self.assertEqual(encode_name("prod_AbC-9_x"), "prod_AbC-9_x")

    def test_escapes(self):
        """
        Slashes, dots, percent signs, spaces and every non-ASCII character
        are percent-encoded (as UTF-8 bytes).
        """
        self.assertEqual(encode_name("a/b"), "a%2Fb")
        self.assertEqual(encode_name(".."), "%2E%2E")
        self.assertEqual(encode_name("send.invoice"), "send%2Einvoice")
        self.assertEqual(encode_name("100%"), "100%25")
        self.assertEqual(encode_name("a b"), "a%20b")
        self.assertEqual(encode_name("caf\u00e9"), "caf%C3%A9")
        self.assertEqual(encode_name("\U0001f600"), "%F0%9F%98%80")

    def test_encodingIsOneToOne(self):
        """
        Distinct names make distinct segments, each decodes back to its
        name, and none holds a C{/} or a C{.}.
        """
        names = AWKWARD_NAMES + [
            "a%2Fb", "a%252Fb", "A/B", "a.b", "a%2Eb", "a%2eb", "", " ", "\u00e9", "e\u0301",
        ]
        encoded = [encode_name(name) for name in names]
        self.assertEqual(len(set(encoded)), len(names))
        for name, segment in zip(names, encoded):
            self.assertEqual(unquote(segment, errors="strict"), name)
            self.assertNotIn("/", segment)
            self.assertNotIn(".", segment)

    def test_layout(self):
        """
        Producers, claims on names and job types live in three folders
        under the prefix; a prefix without a trailing slash gets one.
        """
        for prefix in ("team/jack", "team/jack/"):
            layout = Layout(prefix)
            self.assertEqual(layout.prefix, "team/jack/")
            self.assertEqual(layout.producer("prod_x"), "team/jack/producers/prod_x.json")
            self.assertEqual(
                layout.claim("Billing/EU"), "team/jack/producer-names/Billing%2FEU.json"
            )
            self.assertEqual(
                layout.job_type("prod_x", "send.invoice"),
                "team/jack/job-types/prod_x/send%2Einvoice.json",
            )
        self.assertEqual(Layout("").producer("prod_x"), "producers/prod_x.json")

    def test_kind(self):
        """
        Only keys of Jack's three shapes count as records; anything else
        under the prefix is left alone.
        """
        layout = Layout("jack")
        self.assertEqual(layout.kind("jack/producers/prod_x.json"), PRODUCER)
        self.assertEqual(layout.kind("jack/producer-names/a%2Fb.json"), CLAIM)
        self.assertEqual(layout.kind("jack/job-types/prod_x/send.json"), JOB_TYPE)
        for key in [
            "jack/producers/prod_x.txt",
            "jack/producers/a/b.json",
            "jack/job-types/prod_x.json",
            "jack/job-types/a/b/c.json",
            "jack/notes.json",
            "other/producers/prod_x.json",
        ]:
            self.assertIsNone(layout.kind(key), key)

    def test_parseChecksKey(self):
        """
        A record read from an object must be the one that belongs at its
        key: one copied to another key is refused.
        """
        layout = Layout("jack")
        job_type = make_job_type("prod_x", "send")
        key = layout.job_type("prod_x", "send")
        self.assertEqual(layout.parse(key, JOB_TYPE, to_json(job_type)), job_type)
        self.assertRaises(
            ValueError, layout.parse, layout.job_type("prod_x", "other"), JOB_TYPE,
            to_json(job_type),
        )
        self.assertRaises(ValueError, layout.parse, key, JOB_TYPE, b"{not json")
        self.assertRaises(ValueError, layout.parse, key, JOB_TYPE, b"\xff")

    def test_longPrefixRefused(self):
        """
        A prefix so long that Jack's keys could pass GCS's 1024 bytes is a
        ``ConfigError``.
        """
        check_prefix("p" * 199)
        error = self.assertRaises(ConfigError, check_prefix, "p" * 250)
        self.assertIn("GCS_PREFIX is 251 bytes long", str(error))
        self.assertRaises(ConfigError, GCSConfigStore, "bucket", "p" * 250)


class LayoutInBucketTests(TestCase):
    """
    What an operator finds in the bucket.
    """

    def setUp(self):
        self.gcs = shared_gcs(self)
        self.bucket = self.gcs.new_bucket()

    @inlineCallbacks
    def test_objects(self):
        """
        A producer is two objects (its record and the claim on its name), a
        job type one; all under the prefix, all JSON in protobuf's JSON
        mapping (camelCase fields, enum names, RFC 3339 times, fields at
        their default value written too).
        """
        store = yield started_store(self, self.gcs, self.bucket, prefix="team/jack")
        producer = make_producer("Billing/EU 100%", description="Invoices")
        yield store.create_producer(producer)
        yield store.create_job_type(
            make_job_type(producer.producer_id, "send.invoice", queue=Queue.QUEUE_HIGH,
                          max_retries=0)
        )
        pid = producer.producer_id
        objects = self.gcs.objects(self.bucket)
        self.assertEqual(
            sorted(objects),
            [
                f"team/jack/job-types/{pid}/send%2Einvoice.json",
                "team/jack/producer-names/Billing%2FEU%20100%25.json",
                f"team/jack/producers/{pid}.json",
            ],
        )
        self.assertEqual(
            json.loads(objects[f"team/jack/producers/{pid}.json"]),
            {
                "producerId": pid,
                "name": "Billing/EU 100%",
                "description": "Invoices",
                "createdAt": "2023-11-14T22:13:20.123456789Z",
            },
        )
        self.assertEqual(
            json.loads(objects["team/jack/producer-names/Billing%2FEU%20100%25.json"]),
            {"producerId": pid, "name": "Billing/EU 100%"},
        )
        self.assertEqual(
            json.loads(objects[f"team/jack/job-types/{pid}/send%2Einvoice.json"]),
            {
                "producerId": pid,
                "name": "send.invoice",
                "queue": "QUEUE_HIGH",
                "maxRetries": 0,
                "description": "does send.invoice",
                "createdAt": "2023-11-14T22:13:20.123456790Z",
            },
        )

    @inlineCallbacks
    def test_prefixesAreSeparate(self):
        """
        Stores on one bucket under different prefixes (``jack`` and
        ``jack2``: a prefix is a folder, not a string prefix) share nothing.
        """
        one = yield started_store(self, self.gcs, self.bucket, prefix="jack")
        two = yield started_store(self, self.gcs, self.bucket, prefix="jack2")
        producer = yield one.create_producer(make_producer("billing"))
        yield two.create_producer(make_producer("billing"))
        yield two.refresh()
        listed, _ = yield two.list_producers(10, None)
        self.assertNotIn(producer, listed)
        yield self.assertFailure(two.get_producer(producer.producer_id), NotFound)
        self.assertEqual(
            sorted({key.split("/")[0] for key in self.gcs.objects(self.bucket)}),
            ["jack", "jack2"],
        )

    @inlineCallbacks
    def test_survivesRestart(self):
        """
        A new store on the same bucket and prefix (Jack restarted) loads
        every producer and job type, equal field for field.
        """
        store = yield started_store(self, self.gcs, self.bucket)
        producers = [make_producer(name) for name in ("billing", "caf\u00e9", "a/b")]
        job_types = []
        for producer in producers:
            yield store.create_producer(producer)
            for name in ("send", "refund.v2"):
                job_type = make_job_type(producer.producer_id, name)
                job_types.append(job_type)
                yield store.create_job_type(job_type)
        yield store.stopService()

        again = yield started_store(self, self.gcs, self.bucket)
        listed, more = yield again.list_producers(10, None)
        self.assertEqual((listed, more), (sorted(producers, key=lambda p: p.name), False))
        for job_type in job_types:
            self.assertEqual(
                (yield again.get_job_type(job_type.producer_id, job_type.name)), job_type
            )
        self.assertEqual(again.stats["lookups"], 0)

    @inlineCallbacks
    def test_foreignObjectsIgnored(self):
        """
        Objects that are not Jack's records (garbage, a record copied to
        another key, other files) are ignored, with a warning: the store
        still loads what is valid.
        """
        store = yield started_store(self, self.gcs, self.bucket)
        producer = yield store.create_producer(make_producer("billing"))
        yield store.create_job_type(make_job_type(producer.producer_id, "send"))
        pid = producer.producer_id
        self.gcs.put(self.bucket, f"jack/job-types/{pid}/broken.json", b"{not json")
        self.gcs.put(
            self.bucket, f"jack/job-types/{pid}/copy.json",
            to_json(make_job_type(pid, "send")),
        )
        self.gcs.put(self.bucket, "jack/README.txt", b"hello")
        again = yield started_store(self, self.gcs, self.bucket)
        listed, _ = yield again.list_job_types(pid, 10, None)
        self.assertEqual([t.name for t in listed], ["send"])


class ReplicaTests(TestCase):
    """
    Two stores on one bucket, as two Jack replicas.
    """

    @inlineCallbacks
    def setUp(self):
        self.gcs = shared_gcs(self)
        self.bucket = self.gcs.new_bucket()
        self.a = yield started_store(self, self.gcs, self.bucket)
        self.b = yield started_store(self, self.gcs, self.bucket)

    @inlineCallbacks
    def test_usableOnOtherReplicaAtOnce(self):
        """
        A producer and job type created on one replica are found on the
        other at once, without a refresh: the miss asks GCS for that one
        record, and later lookups are answered from memory.
        """
        producer = yield self.a.create_producer(make_producer("billing"))
        job_type = yield self.a.create_job_type(make_job_type(producer.producer_id, "send"))
        self.assertEqual(
            (yield self.b.get_job_type(producer.producer_id, "send")), job_type
        )
        self.assertEqual(self.b.stats["lookups"], 2)  # the producer, then its job type
        again = self.b.get_job_type(producer.producer_id, "send")
        self.assertEqual(self.successResultOf(again), job_type)
        self.assertEqual(self.b.stats["lookups"], 2)
        self.assertEqual((yield self.b.get_producer(producer.producer_id)), producer)

    @inlineCallbacks
    def test_jobTypeCreatedElsewhere(self):
        """
        A job type added on one replica to a producer the other already
        holds is found there at once too.
        """
        producer = yield self.a.create_producer(make_producer("billing"))
        yield self.b.get_producer(producer.producer_id)
        job_type = yield self.a.create_job_type(make_job_type(producer.producer_id, "send"))
        self.assertEqual((yield self.b.get_job_type(producer.producer_id, "send")), job_type)

    @inlineCallbacks
    def test_createJobTypeForProducerMadeElsewhere(self):
        """
        A replica can add a job type to a producer made on the other one.
        """
        producer = yield self.a.create_producer(make_producer("billing"))
        job_type = make_job_type(producer.producer_id, "send")
        self.assertEqual((yield self.b.create_job_type(job_type)), job_type)
        self.assertEqual((yield self.a.get_job_type(producer.producer_id, "send")), job_type)

    @inlineCallbacks
    def test_sameNameFromTwoReplicas(self):
        """
        Two replicas creating a producer of the same name at once: exactly
        one succeeds, the other fails with ``AlreadyExists``; afterwards
        both hold the winner only, and the loser left no record behind.
        """
        first, second = make_producer("billing"), make_producer("billing")
        results = yield DeferredList(
            [self.a.create_producer(first), self.b.create_producer(second)],
            consumeErrors=True,
        )
        self.assertEqual(outcomes(results), ["AlreadyExists", "ok"])
        winner = first if results[0][0] else second
        for store in (self.a, self.b):
            yield store.refresh()
            listed, _ = yield store.list_producers(10, None)
            self.assertEqual(listed, [winner])
        producer_keys = [
            key for key in self.gcs.objects(self.bucket) if "/producers/" in key
        ]
        self.assertEqual(producer_keys, [f"jack/producers/{winner.producer_id}.json"])

    @inlineCallbacks
    def test_sameJobTypeFromTwoReplicas(self):
        """
        Two replicas creating the same job type at once (identical content
        even): one success, one ``AlreadyExists``.
        """
        producer = yield self.a.create_producer(make_producer("billing"))
        yield self.b.get_producer(producer.producer_id)
        results = yield DeferredList(
            [
                self.a.create_job_type(make_job_type(producer.producer_id, "send")),
                self.b.create_job_type(make_job_type(producer.producer_id, "send")),
            ],
            consumeErrors=True,
        )
        self.assertEqual(outcomes(results), ["AlreadyExists", "ok"])

    @inlineCallbacks
    def test_twentyConcurrentCreates(self):
        """
        20 producers of different names created at once, half on each
        replica: all survive, on both replicas and in a third one started
        afterwards.
        """
        producers = [make_producer(f"service-{n:02d}") for n in range(20)]
        results = yield DeferredList(
            [
                (self.a if n % 2 else self.b).create_producer(producer)
                for n, producer in enumerate(producers)
            ],
            consumeErrors=True,
        )
        self.assertEqual(outcomes(results), ["ok"] * 20)
        third = yield started_store(self, self.gcs, self.bucket)
        for store in (self.a, self.b, third):
            yield store.refresh()
            listed, more = yield store.list_producers(100, None)
            self.assertEqual((listed, more), (producers, False))

    @inlineCallbacks
    def test_listsFollowAfterRefresh(self):
        """
        Lists come from the snapshot: a producer made on another replica is
        listed after the next refresh.  Listing the job types of a producer
        this replica did not hold yet refreshes first, so that list is
        complete at once.
        """
        producer = yield self.a.create_producer(make_producer("billing"))
        for name in ("send", "refund"):
            yield self.a.create_job_type(make_job_type(producer.producer_id, name))
        listed, _ = yield self.b.list_producers(10, None)
        self.assertEqual(listed, [])
        types, more = yield self.b.list_job_types(producer.producer_id, 10, None)
        self.assertEqual(([t.name for t in types], more), (["refund", "send"], False))
        listed, _ = yield self.b.list_producers(10, None)
        self.assertEqual(listed, [producer])


class CrashTests(TestCase):
    """
    A replica that dies between the two writes of a producer leaves no
    name claimed without its producer.
    """

    @inlineCallbacks
    def test_crashBetweenRecordAndClaim(self):
        """
        The record is written before the claim; when the process dies in
        between, the record stays behind with no claim, every store ignores
        it, and the name can still be taken.
        """
        gcs = shared_gcs(self)
        bucket = gcs.new_bucket()
        writes = []

        class Crash(Exception):
            pass

        class CrashingStore(GCSConfigStore):
            def _create_object(self, key, data, token=None):
                writes.append(key)
                if "/producer-names/" in key:
                    raise Crash("the process died here")
                return super()._create_object(key, data, token)

        crashing = CrashingStore(bucket, "jack", client_factory=gcs.client)
        self.addCleanup(crashing.stopService)
        yield crashing.startService()
        lost = make_producer("billing")
        yield self.assertFailure(crashing.create_producer(lost), Crash)
        self.flushLoggedErrors(Crash)
        self.assertEqual(
            writes,
            [f"jack/producers/{lost.producer_id}.json", "jack/producer-names/billing.json"],
        )
        self.assertEqual(
            sorted(gcs.objects(bucket)), [f"jack/producers/{lost.producer_id}.json"]
        )

        other = yield started_store(self, gcs, bucket)
        yield self.assertFailure(other.get_producer(lost.producer_id), NotFound)
        yield self.assertFailure(
            other.create_job_type(make_job_type(lost.producer_id, "send")), NotFound
        )
        winner = yield other.create_producer(make_producer("billing"))
        fresh = yield started_store(self, gcs, bucket)
        listed, _ = yield fresh.list_producers(10, None)
        self.assertEqual(listed, [winner])
        yield self.assertFailure(fresh.get_producer(lost.producer_id), NotFound)

    @inlineCallbacks
    def test_retriedWriteKnowsItsOwnObject(self):
        """
        A create-only write whose first attempt succeeded but whose answer
        was lost (the client library retries) recognises its own object by
        the write id in its metadata; another write of the same key is
        refused.
        """
        gcs = shared_gcs(self)
        store = yield started_store(self, gcs, gcs.new_bucket())
        key = store.layout.claim("billing")
        first = yield deferToThread(store._create_object, key, b"{}", "attempt-1")
        self.assertIsInstance(first, int)
        again = yield deferToThread(store._create_object, key, b"{}", "attempt-1")
        self.assertEqual(again, first)
        other = yield deferToThread(store._create_object, key, b"{}", "another-write")
        self.assertIsNone(other)


class LookupTests(TestCase):
    """
    Misses of the snapshot: one GCS request per record, shared by lookups
    in flight, and a short negative cache.
    """

    @inlineCallbacks
    def setUp(self):
        self.gcs = shared_gcs(self)
        self.bucket = self.gcs.new_bucket()
        self.clock = Clock()
        self.store = yield started_store(
            self, self.gcs, self.bucket, clock=self.clock, negative_ttl=2.0
        )
        self.other = yield started_store(self, self.gcs, self.bucket)

    @inlineCallbacks
    def test_unknownIdAskedOnceWithinTTL(self):
        """
        An id GCS does not have is asked for once; within the negative TTL
        it is answered ``NotFound`` from memory, after it GCS is asked again.
        """
        unknown = new_producer_id()
        for _ in range(3):
            yield self.assertFailure(self.store.get_producer(unknown), NotFound)
        self.assertEqual(self.store.stats["lookups"], 1)
        self.clock.advance(2.0)
        yield self.assertFailure(self.store.get_producer(unknown), NotFound)
        self.assertEqual(self.store.stats["lookups"], 2)

    @inlineCallbacks
    def test_unknownJobTypeAskedOnce(self):
        """
        A job type name the producer does not have is asked for once too.
        """
        producer = yield self.store.create_producer(make_producer("billing"))
        for _ in range(5):
            error = yield self.assertFailure(
                self.store.get_job_type(producer.producer_id, "nope"), NotFound
            )
        self.assertEqual(error.field, "job_type")
        self.assertEqual(self.store.stats["lookups"], 1)

    @inlineCallbacks
    def test_concurrentMissesShareOneRequest(self):
        """
        50 lookups of one unknown id at once make one GCS request.
        """
        unknown = new_producer_id()
        results = yield DeferredList(
            [self.store.get_producer(unknown) for _ in range(50)], consumeErrors=True
        )
        self.assertEqual(outcomes(results), ["NotFound"] * 50)
        self.assertEqual(self.store.stats["lookups"], 1)

    @inlineCallbacks
    def test_floodOfDistinctIdsIsBounded(self):
        """
        Lookups of many distinct unknown ids at once: at most
        C{MAX_LOOKUPS} reach GCS, the rest answer ``NotFound`` at once.
        """
        results = yield DeferredList(
            [self.store.get_producer(new_producer_id()) for _ in range(100)],
            consumeErrors=True,
        )
        self.assertEqual(outcomes(results), ["NotFound"] * 100)
        self.assertEqual(self.store.stats["lookups"], GCSConfigStore.MAX_LOOKUPS)
        self.assertEqual(self.store.stats["lookups_shed"], 100 - GCSConfigStore.MAX_LOOKUPS)

    @inlineCallbacks
    def test_createdElsewhereAfterMiss(self):
        """
        A producer created on another replica right after this one missed
        it is found here once the negative TTL has passed.
        """
        producer = make_producer("billing")
        yield self.assertFailure(self.store.get_producer(producer.producer_id), NotFound)
        yield self.other.create_producer(producer)
        yield self.assertFailure(self.store.get_producer(producer.producer_id), NotFound)
        self.clock.advance(2.0)
        self.assertEqual((yield self.store.get_producer(producer.producer_id)), producer)

    @inlineCallbacks
    def test_zeroTTLAlwaysAsks(self):
        """
        With a negative TTL of 0 every miss asks GCS.
        """
        store = yield started_store(self, self.gcs, self.bucket, negative_ttl=0)
        unknown = new_producer_id()
        for _ in range(3):
            yield self.assertFailure(store.get_producer(unknown), NotFound)
        self.assertEqual(store.stats["lookups"], 3)

    @inlineCallbacks
    def test_absurdIdsNeverReachGCS(self):
        """
        An id too long to be an object key is simply not there.
        """
        error = yield self.assertFailure(self.store.get_producer("p" * 1100), NotFound)
        self.assertEqual(error.field, "producer_id")
        self.assertEqual(self.store.stats["downloads"], 0)

    @inlineCallbacks
    def test_refreshLoop(self):
        """
        Every C{refresh_interval} the store refreshes by itself: a producer
        another replica made is listed after one interval.
        """
        producer = yield self.other.create_producer(make_producer("billing"))
        pages = self.store.stats["list_pages"]
        self.clock.advance(10.0)
        yield self.store.refresh()  # waits for the refresh the loop began
        self.assertEqual(self.store.stats["list_pages"], pages + 2)
        listed, _ = yield self.store.list_producers(10, None)
        self.assertEqual(listed, [producer])


class RefreshTests(TestCase):
    """
    A refresh lists the bucket and downloads only what changed.
    """

    @inlineCallbacks
    def setUp(self):
        self.gcs = shared_gcs(self)
        self.bucket = self.gcs.new_bucket()
        self.writer = yield started_store(self, self.gcs, self.bucket)
        self.producers = []
        for n in range(3):
            producer = yield self.writer.create_producer(make_producer(f"p{n}"))
            self.producers.append(producer)
            for name in ("a", "b"):
                yield self.writer.create_job_type(make_job_type(producer.producer_id, name))
        self.objects = 3 * 2 + 3 * 2  # records and claims, job types

    @inlineCallbacks
    def test_downloadsOnlyNewObjects(self):
        """
        Loading downloads each object once; a refresh with nothing new
        downloads nothing; one new job type is one download.  The store's
        own writes are never downloaded.
        """
        reader = yield started_store(self, self.gcs, self.bucket)
        self.assertEqual(reader.stats["downloads"], self.objects)
        yield reader.refresh()
        self.assertEqual(reader.stats["downloads"], self.objects)
        yield self.writer.create_job_type(make_job_type(self.producers[0].producer_id, "c"))
        yield reader.refresh()
        self.assertEqual(reader.stats["downloads"], self.objects + 1)
        self.assertEqual(
            (yield reader.get_job_type(self.producers[0].producer_id, "c")).name, "c"
        )
        yield reader.refresh()
        yield self.writer.refresh()
        self.assertEqual(reader.stats["downloads"], self.objects + 1)
        self.assertEqual(self.writer.stats["downloads"], 0)

    @inlineCallbacks
    def test_listingPages(self):
        """
        The listing goes page by page: 12 objects at 5 a page are 3 pages.
        """
        reader = yield started_store(self, self.gcs, self.bucket, list_page_size=5)
        self.assertEqual(reader.stats["list_pages"], 3)
        yield reader.refresh()
        self.assertEqual(reader.stats["list_pages"], 6)
        listed, _ = yield reader.list_producers(10, None)
        self.assertEqual(listed, self.producers)

    @inlineCallbacks
    def test_changedGenerationDownloadedAgain(self):
        """
        An object rewritten by hand (a new generation under the same name)
        is downloaded again, and the snapshot follows it.
        """
        reader = yield started_store(self, self.gcs, self.bucket)
        producer_id = self.producers[1].producer_id
        changed = make_job_type(producer_id, "a", queue=Queue.QUEUE_LOW)
        changed.description = "edited by hand"
        self.gcs.put(self.bucket, reader.layout.job_type(producer_id, "a"), to_json(changed))
        yield reader.refresh()
        self.assertEqual(reader.stats["downloads"], self.objects + 1)
        self.assertEqual((yield reader.get_job_type(producer_id, "a")), changed)

    @inlineCallbacks
    def test_deletedByHand(self):
        """
        An object deleted by hand leaves the snapshot at the next refresh.
        """
        reader = yield started_store(self, self.gcs, self.bucket)
        producer_id = self.producers[2].producer_id
        self.gcs.delete(self.bucket, reader.layout.job_type(producer_id, "b"))
        yield reader.refresh()
        listed, _ = yield reader.list_job_types(producer_id, 10, None)
        self.assertEqual([t.name for t in listed], ["a"])


class ScaleTests(TestCase):
    """
    Thousands of job types.
    """

    timeout = 600

    @inlineCallbacks
    def test_tenThousandJobTypes(self):
        """
        With 10,000 job types in the bucket a refresh lists them in pages of
        1000 and downloads none it holds already; one new job type is one
        download.
        """
        gcs = shared_gcs(self)
        bucket = gcs.new_bucket()
        # A clock of its own: no background refresh runs during the test.
        store = yield started_store(self, gcs, bucket, clock=Clock())
        producer = yield store.create_producer(make_producer("big"))
        names = [f"type-{n:05d}" for n in range(10_000)]
        results = yield DeferredList(
            [store.create_job_type(make_job_type(producer.producer_id, name))
             for name in names],
            consumeErrors=True,
        )
        self.assertEqual(outcomes(results), ["ok"] * 10_000)
        objects = 10_000 + 2

        began = time.monotonic()
        pages, downloads = store.stats["list_pages"], store.stats["downloads"]
        yield store.refresh()
        self.assertEqual(store.stats["list_pages"] - pages, math.ceil(objects / 1000))
        self.assertEqual(store.stats["downloads"], downloads)
        refresh_seconds = time.monotonic() - began

        # Another replica adds one.
        gcs.put(
            bucket,
            store.layout.job_type(producer.producer_id, "type-new"),
            to_json(make_job_type(producer.producer_id, "type-new")),
        )
        yield store.refresh()
        self.assertEqual(store.stats["downloads"], downloads + 1)

        seen, after = [], None
        while True:
            listed, more = yield store.list_job_types(producer.producer_id, 1000, after)
            seen.extend(t.name for t in listed)
            if not more:
                break
            after = listed[-1].name
        self.assertEqual(seen, names + ["type-new"])
        self.assertLess(refresh_seconds, 60)


class HotPathTests(TestCase):
    """
    The enqueue hot path never waits on GCS.
    """

    @inlineCallbacks
    def test_answersFromMemoryWithGCSGone(self):
        """
        A job type in the snapshot is returned in a Deferred that has
        already fired, with no GCS request, even with GCS stopped.
        """
        gcs = own_gcs(self)
        bucket = gcs.new_bucket()
        store = yield started_store(self, gcs, bucket, timeout=1.0)
        producer = yield store.create_producer(make_producer("billing"))
        job_type = yield store.create_job_type(make_job_type(producer.producer_id, "send"))
        before = dict(store.stats)
        gcs.stop()
        for _ in range(100):
            self.assertEqual(
                self.successResultOf(store.get_job_type(producer.producer_id, "send")),
                job_type,
            )
        self.assertEqual(store.stats, before)


class OutageTests(TestCase):
    """
    GCS going away while Jack runs, and coming back.
    """

    @inlineCallbacks
    def test_gcsGoesAwayAndComesBack(self):
        """
        With GCS stopped: lookups in the snapshot work, writes and lookups
        of unknown records fail with ``Unavailable`` within about the
        timeout, C{check} fires with C{False}, a refresh fails and keeps
        the snapshot.  With GCS back on the same port, everything works
        again by itself, and nothing was lost.
        """
        gcs = own_gcs(self)
        bucket = gcs.new_bucket()
        store = yield started_store(self, gcs, bucket, timeout=1.0)
        producer = yield store.create_producer(make_producer("billing"))
        job_type = yield store.create_job_type(make_job_type(producer.producer_id, "send"))
        gcs.stop()

        self.assertEqual(
            self.successResultOf(store.get_job_type(producer.producer_id, "send")), job_type
        )
        began = time.monotonic()
        error = yield self.assertFailure(
            store.create_producer(make_producer("mail")), Unavailable
        )
        self.assertLess(time.monotonic() - began, 10)
        self.assertIn("config storage (GCS) unavailable", str(error))
        self.assertIn(gcs.url, str(error))
        yield self.assertFailure(
            store.create_job_type(make_job_type(producer.producer_id, "refund")), Unavailable
        )
        self.assertIs((yield store.check()), False)
        yield self.assertFailure(store.get_producer(new_producer_id()), Unavailable)
        yield self.assertFailure(store.refresh(), Unavailable)
        self.assertEqual((yield store.get_producer(producer.producer_id)), producer)
        listed, _ = yield store.list_producers(10, None)
        self.assertEqual(listed, [producer])
        # Writes answered UNAVAILABLE changed nothing the store claims.
        yield self.assertFailure(store.create_producer(make_producer("billing")), AlreadyExists)

        gcs.start()
        self.assertIs((yield store.check()), True)
        mail = yield store.create_producer(make_producer("mail"))
        yield self.assertFailure(store.get_producer(new_producer_id()), NotFound)
        again = yield started_store(self, gcs, bucket)
        listed, _ = yield again.list_producers(10, None)
        self.assertEqual(listed, [producer, mail])


class StartTests(TestCase):
    """
    A store that cannot load its snapshot stops the start with one line.
    """

    @inlineCallbacks
    def assertStartFails(self, store):
        self.addCleanup(store.stopService)
        error = yield self.assertFailure(store.startService(), ConfigError)
        self.assertNotIn("\n", str(error))
        return str(error)

    @inlineCallbacks
    def test_noSuchBucket(self):
        """A bucket that does not exist is named."""
        gcs = shared_gcs(self)
        message = yield self.assertStartFails(
            GCSConfigStore("no-such-bucket", client_factory=gcs.client)
        )
        self.assertEqual(message, f"GCS: bucket 'no-such-bucket' does not exist at {gcs.url}")

    @inlineCallbacks
    def test_unreachable(self):
        """
        A GCS endpoint nothing answers on fails within about the timeout,
        naming it and why.
        """
        from jackd.testing.gcs import FakeGCS

        nobody = FakeGCS(port=free_port())  # never started
        self.addCleanup(nobody.close)
        began = time.monotonic()
        message = yield self.assertStartFails(
            GCSConfigStore("bucket", client_factory=nobody.client, timeout=1.0)
        )
        self.assertLess(time.monotonic() - began, 10)
        self.assertTrue(message.startswith(f"GCS: no answer from {nobody.url} within 1s ("),
                        message)
        self.assertIn("Connection refused", message)

    @inlineCallbacks
    def test_storageEmulatorHost(self):
        """
        Without a client factory the store makes its client as the library
        does: C{STORAGE_EMULATOR_HOST} points it at the emulator.
        """
        gcs = shared_gcs(self)
        bucket = gcs.new_bucket()
        previous = os.environ.get("STORAGE_EMULATOR_HOST")
        os.environ["STORAGE_EMULATOR_HOST"] = gcs.url

        def restore():
            if previous is None:
                os.environ.pop("STORAGE_EMULATOR_HOST", None)
            else:
                os.environ["STORAGE_EMULATOR_HOST"] = previous

        self.addCleanup(restore)
        store = GCSConfigStore(bucket, "jack")
        self.addCleanup(store.stopService)
        yield store.startService()
        restore()
        producer = yield store.create_producer(make_producer("billing"))
        self.assertIn(f"jack/producers/{producer.producer_id}.json", gcs.objects(bucket))

    def test_fromOptions(self):
        """
        C{from_options} builds the store the GCS settings describe.
        """
        from jackd.tap import Options

        options = Options(environ={})
        options.parseOptions([
            "--gcs-bucket", "b", "--gcs-prefix", "team/jack", "--gcs-refresh-interval", "1m",
            "--gcs-negative-ttl", "500ms", "--gcs-timeout", "3s",
        ])
        clock = Clock()
        store = gcs_module.from_options(options, clock)
        self.assertEqual(
            (store.bucket, store.prefix, store._refresh_interval, store._negative_ttl,
             store._timeout, store._reactor),
            ("b", "team/jack/", 60.0, 0.5, 3.0, clock),
        )
        self.assertEqual(
            store.description, "GCS gs://b/team/jack/ (shared by every Jack using it)"
        )

