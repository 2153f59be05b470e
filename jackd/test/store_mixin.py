"""
The conformance suite of ``IConfigStore``: every configuration store (memory,
GCS, ...) runs these tests through a subclass that says how to build one.

The tests wait on the store's Deferreds instead of assuming they have already
fired, so a store doing real I/O runs them unchanged.  Subclasses mix this
into L{twisted.trial.unittest.TestCase} and define C{make_store()}.
"""

from twisted.application.service import IService
from twisted.internet.defer import DeferredList, inlineCallbacks
from zope.interface.verify import verifyObject

from jack.admin_pb2 import JobType, Producer
from jack.job_pb2 import Queue
from jackd.errors import AlreadyExists, NotFound
from jackd.ids import new_producer_id
from jackd.interfaces import IConfigStore
from jackd.test.mixin_base import StoreTestsBase

# A fixed instant (2023-11-14T22:13:20.123456789Z) so records carry nanos.
CREATED_AT_NS = 1_700_000_000_123_456_789


def make_producer(name, description="", producer_id=None):
    """
    A ``jack.Producer`` ready for C{create_producer}: every field set.
    """
    producer = Producer(
        producer_id=new_producer_id() if producer_id is None else producer_id,
        name=name,
        description=description or f"the {name} service",
    )
    producer.created_at.FromNanoseconds(CREATED_AT_NS)
    return producer


def make_job_type(producer_id, name, queue=Queue.QUEUE_MEDIUM, max_retries=3):
    """
    A ``jack.JobType`` ready for C{create_job_type}: every field set.
    """
    job_type = JobType(
        producer_id=producer_id,
        name=name,
        queue=queue,
        max_retries=max_retries,
        description=f"does {name}",
    )
    job_type.created_at.FromNanoseconds(CREATED_AT_NS + 1)
    return job_type


# Names a store must keep exactly, whatever it does with them (object keys,
# file names, URLs): path separators, dots, percent signs, spaces, accents,
# emoji sequences, right-to-left text.
AWKWARD_NAMES = [
    "a/b", "/", "..", ".", "../etc/passwd", "100%", "%2F", "%", "a b", "?x=1#y",
    "caf\u00e9", "\U0001f469\u200d\U0001f4bb dev", "\u05e9\u05dc\u05d5\u05dd",
    "\\", "*[]", "~tilde", "+plus", "x" * 120,
]

# The longest names the API lets through (128 bytes of UTF-8), in
# characters of one to four bytes, and the longest job type names (128
# characters of A-Z a-z 0-9 _ - .): a store must keep them all.
LONGEST_NAMES = [
    "x" * 128,
    "%" * 128,
    "\u00e9" * 64,
    "\u65e5" * 42 + "xy",
    "\U0001f600" * 32,
    "/." * 64,
]
LONGEST_JOB_TYPE_NAMES = ["a" + "." * 127, "Z" * 128, "a-" * 64]


class ConfigStoreTestsMixin(StoreTestsBase):
    """
    Tests every ``IConfigStore`` passes.

    Subclasses define C{make_store()}, returning a store ready to serve (or
    a Deferred firing with one) that holds no producers; they arrange its
    clean-up themselves with C{addCleanup}.
    """

    @inlineCallbacks
    def add_producers(self, names):
        """
        Register a producer for each of C{names}, in that order.

        @return: Deferred firing with the producers created, in that order.
        """
        created = []
        for name in names:
            created.append((yield self.store.create_producer(make_producer(name))))
        return created

    @inlineCallbacks
    def add_job_types(self, producer_id, names):
        """
        Register a job type of C{producer_id} for each of C{names}.
        """
        for name in names:
            yield self.store.create_job_type(make_job_type(producer_id, name))

    @inlineCallbacks
    def all_pages(self, list_page, page_size):
        """
        Walk C{list_page(page_size, after)} from the first page to the last.

        @return: Deferred firing with the list of pages, each a list of
            names, and checking that C{more} is true on every page but the
            last.
        """
        pages, after = [], None
        while True:
            records, more = yield list_page(page_size, after)
            pages.append([record.name for record in records])
            if not more:
                return pages
            self.assertTrue(records, "an empty page says more follow")
            after = records[-1].name

    def test_interface(self):
        """
        The store provides ``IConfigStore``.
        """
        self.assertTrue(verifyObject(IConfigStore, self.store))
        self.assertIsInstance(self.store.description, str)

    def test_service(self):
        """
        The store is also an ``IService``: it starts before the APIs and
        stops after them.
        """
        self.assertTrue(verifyObject(IService, self.store))

    @inlineCallbacks
    def test_check(self):
        """
        C{check} fires with C{True} when the store serves reads and writes.
        """
        self.assertIs((yield self.store.check()), True)

    @inlineCallbacks
    def test_createProducerRoundTrip(self):
        """
        C{create_producer} fires with a producer equal, field for field, to
        the one given, and C{get_producer} then fires with an equal one.
        """
        producer = make_producer("billing", description="Invoices and refunds")
        created = yield self.store.create_producer(producer)
        self.assertEqual(created, producer)
        fetched = yield self.store.get_producer(producer.producer_id)
        self.assertEqual(fetched, producer)
        self.assertEqual(fetched.created_at.ToNanoseconds(), CREATED_AT_NS)

    @inlineCallbacks
    def test_listedProducerEqualsCreated(self):
        """
        C{list_producers} returns producers equal, field for field, to those
        created.
        """
        producers = [make_producer("alpha"), make_producer("beta")]
        for producer in producers:
            yield self.store.create_producer(producer)
        listed, more = yield self.store.list_producers(10, None)
        self.assertEqual((list(listed), more), (producers, False))

    @inlineCallbacks
    def test_duplicateProducerName(self):
        """
        C{create_producer} with a name already taken fails with
        ``AlreadyExists``; the first producer of that name stays, and the
        second is not registered under its id.
        """
        first = make_producer("billing", description="first")
        second = make_producer("billing", description="second")
        yield self.store.create_producer(first)
        yield self.assertFailure(self.store.create_producer(second), AlreadyExists)
        self.assertEqual((yield self.store.get_producer(first.producer_id)), first)
        error = yield self.assertFailure(
            self.store.get_producer(second.producer_id), NotFound
        )
        self.assertEqual(error.field, "producer_id")
        listed, more = yield self.store.list_producers(10, None)
        self.assertEqual((list(listed), more), ([first], False))

    @inlineCallbacks
    def test_getUnknownProducer(self):
        """
        C{get_producer} of an id never registered fails with ``NotFound`` on
        field ``producer_id``.
        """
        yield self.add_producers(["billing"])
        error = yield self.assertFailure(
            self.store.get_producer(new_producer_id()), NotFound
        )
        self.assertEqual(error.field, "producer_id")

    @inlineCallbacks
    def test_listProducersEmpty(self):
        """
        C{list_producers} of an empty store fires with no producers and
        C{more} false.
        """
        listed, more = yield self.store.list_producers(10, None)
        self.assertEqual((list(listed), more), ([], False))

    @inlineCallbacks
    def test_listProducersOrderedByName(self):
        """
        C{list_producers} returns producers ordered by name, whatever the
        order they were created in.
        """
        yield self.add_producers(["mail", "billing", "search", "auth"])
        listed, more = yield self.store.list_producers(10, None)
        self.assertEqual(
            ([p.name for p in listed], more),
            (["auth", "billing", "mail", "search"], False),
        )

    @inlineCallbacks
    def test_listProducersPages(self):
        """
        C{list_producers} returns at most C{page_size} producers, those
        whose name sorts after C{after}, and C{more} is true exactly when
        producers follow the last one returned.
        """
        yield self.add_producers(["e", "c", "a", "d", "b"])
        pages = yield self.all_pages(self.store.list_producers, 2)
        self.assertEqual(pages, [["a", "b"], ["c", "d"], ["e"]])

    @inlineCallbacks
    def test_listProducersMoreAtBoundary(self):
        """
        C{more} is false when the page ends exactly on the last producer and
        true when one producer is left after it.
        """
        yield self.add_producers(["a", "b", "c", "d"])
        listed, more = yield self.store.list_producers(4, None)
        self.assertEqual(([p.name for p in listed], more), (["a", "b", "c", "d"], False))
        listed, more = yield self.store.list_producers(3, None)
        self.assertEqual(([p.name for p in listed], more), (["a", "b", "c"], True))
        listed, more = yield self.store.list_producers(2, "b")
        self.assertEqual(([p.name for p in listed], more), (["c", "d"], False))
        listed, more = yield self.store.list_producers(1, "b")
        self.assertEqual(([p.name for p in listed], more), (["c"], True))

    @inlineCallbacks
    def test_listProducersAfterLast(self):
        """
        A page after the last name is empty, with C{more} false.
        """
        yield self.add_producers(["a", "b"])
        listed, more = yield self.store.list_producers(10, "b")
        self.assertEqual((list(listed), more), ([], False))
        listed, more = yield self.store.list_producers(10, "zzz")
        self.assertEqual((list(listed), more), ([], False))

    @inlineCallbacks
    def test_listProducersAfterUnregisteredName(self):
        """
        C{after} need not be a registered name: the page starts at the first
        name sorting after it.
        """
        yield self.add_producers(["apple", "banana", "cherry"])
        listed, more = yield self.store.list_producers(10, "b")
        self.assertEqual(([p.name for p in listed], more), (["banana", "cherry"], False))
        listed, more = yield self.store.list_producers(10, "banana0")
        self.assertEqual(([p.name for p in listed], more), (["cherry"], False))

    @inlineCallbacks
    def test_namesSortByCodePoint(self):
        """
        Names sort by Unicode code point: upper case before lower case,
        accented letters after ``z``, and characters beyond the Basic
        Multilingual Plane after U+FFxx (not before, as UTF-16 order would
        put them), neither by locale nor by UTF-16 code unit.
        """
        names = [
            "zebra", "\U0001f600 smile", "\u00e9mile", "Zulu", "apple",
            "\uff21 fullwidth", "\u65e5\u672c", "\u00c9mile", "a\u0301",
        ]
        yield self.add_producers(names)
        pages = yield self.all_pages(self.store.list_producers, 2)
        self.assertEqual([name for page in pages for name in page], sorted(names))
        self.assertEqual(
            sorted(names),
            [
                "Zulu", "apple", "a\u0301", "zebra", "\u00c9mile", "\u00e9mile",
                "\u65e5\u672c", "\uff21 fullwidth", "\U0001f600 smile",
            ],
        )
        # Paging from a non-ASCII name continues in the same order.
        listed, more = yield self.store.list_producers(10, "\u00e9mile")
        self.assertEqual(
            ([p.name for p in listed], more),
            (["\u65e5\u672c", "\uff21 fullwidth", "\U0001f600 smile"], False),
        )

    @inlineCallbacks
    def test_jobTypeRoundTrip(self):
        """
        C{create_job_type} fires with a job type equal, field for field, to
        the one given, and C{get_job_type} then fires with an equal one.
        """
        [producer] = yield self.add_producers(["billing"])
        job_type = make_job_type(
            producer.producer_id, "send_invoice", queue=Queue.QUEUE_HIGH, max_retries=7
        )
        created = yield self.store.create_job_type(job_type)
        self.assertEqual(created, job_type)
        fetched = yield self.store.get_job_type(producer.producer_id, "send_invoice")
        self.assertEqual(fetched, job_type)
        self.assertEqual(
            (fetched.queue, fetched.max_retries, fetched.created_at.ToNanoseconds()),
            (Queue.QUEUE_HIGH, 7, CREATED_AT_NS + 1),
        )

    @inlineCallbacks
    def test_jobTypeEveryQueue(self):
        """
        Job types keep their queue, whichever of the four it is.
        """
        [producer] = yield self.add_producers(["billing"])
        queues = [Queue.QUEUE_IMMEDIATE, Queue.QUEUE_HIGH, Queue.QUEUE_MEDIUM, Queue.QUEUE_LOW]
        for index, queue in enumerate(queues):
            yield self.store.create_job_type(
                make_job_type(producer.producer_id, f"t{index}", queue=queue)
            )
        listed, more = yield self.store.list_job_types(producer.producer_id, 10, None)
        self.assertEqual(([t.queue for t in listed], more), (queues, False))

    @inlineCallbacks
    def test_createJobTypeUnknownProducer(self):
        """
        C{create_job_type} for a producer never registered fails with
        ``NotFound`` on field ``producer_id``.
        """
        yield self.add_producers(["billing"])
        error = yield self.assertFailure(
            self.store.create_job_type(make_job_type(new_producer_id(), "send")),
            NotFound,
        )
        self.assertEqual(error.field, "producer_id")

    @inlineCallbacks
    def test_duplicateJobType(self):
        """
        C{create_job_type} with a name the producer already has fails with
        ``AlreadyExists``, and the first job type of that name stays.
        """
        [producer] = yield self.add_producers(["billing"])
        first = make_job_type(producer.producer_id, "send", queue=Queue.QUEUE_LOW)
        second = make_job_type(producer.producer_id, "send", queue=Queue.QUEUE_HIGH)
        yield self.store.create_job_type(first)
        yield self.assertFailure(self.store.create_job_type(second), AlreadyExists)
        fetched = yield self.store.get_job_type(producer.producer_id, "send")
        self.assertEqual(fetched, first)
        listed, more = yield self.store.list_job_types(producer.producer_id, 10, None)
        self.assertEqual((list(listed), more), ([first], False))

    @inlineCallbacks
    def test_sameJobTypeNameOtherProducer(self):
        """
        Two producers may each have a job type of the same name; each keeps
        its own.
        """
        billing, mail = yield self.add_producers(["billing", "mail"])
        for_billing = make_job_type(billing.producer_id, "send", queue=Queue.QUEUE_LOW)
        for_mail = make_job_type(mail.producer_id, "send", queue=Queue.QUEUE_HIGH)
        yield self.store.create_job_type(for_billing)
        yield self.store.create_job_type(for_mail)
        self.assertEqual(
            (yield self.store.get_job_type(billing.producer_id, "send")), for_billing
        )
        self.assertEqual((yield self.store.get_job_type(mail.producer_id, "send")), for_mail)

    @inlineCallbacks
    def test_getJobTypeUnknownProducer(self):
        """
        C{get_job_type} for a producer never registered fails with
        ``NotFound`` on field ``producer_id``.
        """
        [producer] = yield self.add_producers(["billing"])
        yield self.add_job_types(producer.producer_id, ["send"])
        error = yield self.assertFailure(
            self.store.get_job_type(new_producer_id(), "send"), NotFound
        )
        self.assertEqual(error.field, "producer_id")

    @inlineCallbacks
    def test_getJobTypeUnknownName(self):
        """
        C{get_job_type} of a name the producer does not have fails with
        ``NotFound`` on field ``job_type``, even when another producer has a
        job type of that name.
        """
        billing, mail = yield self.add_producers(["billing", "mail"])
        yield self.add_job_types(billing.producer_id, ["send"])
        yield self.add_job_types(mail.producer_id, ["deliver"])
        for name in ["deliver", "sen", "Send"]:
            error = yield self.assertFailure(
                self.store.get_job_type(billing.producer_id, name), NotFound
            )
            self.assertEqual(error.field, "job_type")

    @inlineCallbacks
    def test_listJobTypesUnknownProducer(self):
        """
        C{list_job_types} for a producer never registered fails with
        ``NotFound`` on field ``producer_id``.
        """
        yield self.add_producers(["billing"])
        error = yield self.assertFailure(
            self.store.list_job_types(new_producer_id(), 10, None), NotFound
        )
        self.assertEqual(error.field, "producer_id")

    @inlineCallbacks
    def test_listJobTypesEmpty(self):
        """
        C{list_job_types} of a producer with no job types fires with none
        and C{more} false.
        """
        [producer] = yield self.add_producers(["billing"])
        listed, more = yield self.store.list_job_types(producer.producer_id, 10, None)
        self.assertEqual((list(listed), more), ([], False))

    @inlineCallbacks
    def test_listJobTypesPages(self):
        """
        C{list_job_types} returns only that producer's job types, ordered by
        name, at most C{page_size} at a time, with C{more} true exactly when
        job types follow the last one returned.
        """
        billing, mail = yield self.add_producers(["billing", "mail"])
        yield self.add_job_types(billing.producer_id, ["refund", "charge", "void", "audit", "notify"])
        yield self.add_job_types(mail.producer_id, ["bounce", "deliver"])

        def page(page_size, after):
            return self.store.list_job_types(billing.producer_id, page_size, after)

        self.assertEqual(
            (yield self.all_pages(page, 2)),
            [["audit", "charge"], ["notify", "refund"], ["void"]],
        )
        self.assertEqual(
            (yield self.all_pages(page, 5)),
            [["audit", "charge", "notify", "refund", "void"]],
        )
        listed, more = yield page(4, None)
        self.assertEqual(more, True)
        listed, more = yield page(10, "void")
        self.assertEqual((list(listed), more), ([], False))
        listed, more = yield page(10, "d")
        self.assertEqual(([t.name for t in listed], more), (["notify", "refund", "void"], False))

    @inlineCallbacks
    def test_listedJobTypeEqualsCreated(self):
        """
        C{list_job_types} returns job types equal, field for field, to those
        created.
        """
        [producer] = yield self.add_producers(["billing"])
        job_types = [
            make_job_type(producer.producer_id, "a", queue=Queue.QUEUE_IMMEDIATE, max_retries=0),
            make_job_type(producer.producer_id, "b", queue=Queue.QUEUE_LOW, max_retries=25),
        ]
        for job_type in job_types:
            yield self.store.create_job_type(job_type)
        listed, more = yield self.store.list_job_types(producer.producer_id, 10, None)
        self.assertEqual((list(listed), more), (job_types, False))

    @inlineCallbacks
    def test_jobTypeNamesSortByCodePoint(self):
        """
        Job type names sort by Unicode code point, as producer names do.
        """
        [producer] = yield self.add_producers(["billing"])
        names = ["\U0001f4e7 mail", "\uff45", "\u00fcber", "Zap", "zap"]
        yield self.add_job_types(producer.producer_id, names)
        listed, more = yield self.store.list_job_types(producer.producer_id, 10, None)
        self.assertEqual(
            ([t.name for t in listed], more),
            (["Zap", "zap", "\u00fcber", "\uff45", "\U0001f4e7 mail"], False),
        )

    @inlineCallbacks
    def test_awkwardProducerNames(self):
        """
        Producer names with path separators, dots, percent signs and
        characters beyond ASCII come back exactly as given, each its own
        producer, listed in code point order.
        """
        producers = yield self.add_producers(AWKWARD_NAMES)
        for producer in producers:
            self.assertEqual((yield self.store.get_producer(producer.producer_id)), producer)
        pages = yield self.all_pages(self.store.list_producers, 7)
        self.assertEqual([name for page in pages for name in page], sorted(AWKWARD_NAMES))
        for name in AWKWARD_NAMES:
            yield self.assertFailure(
                self.store.create_producer(make_producer(name)), AlreadyExists
            )

    @inlineCallbacks
    def test_awkwardJobTypeNames(self):
        """
        Job type names are kept exactly too (the API allows fewer characters
        than a store must handle), and never collide with one another.
        """
        [producer] = yield self.add_producers(["billing"])
        names = ["send.invoice", "send%2Einvoice", "send_invoice", ".", "..", "a/b", "a%2Fb"]
        yield self.add_job_types(producer.producer_id, names)
        for name in names:
            fetched = yield self.store.get_job_type(producer.producer_id, name)
            self.assertEqual(fetched.name, name)
        listed, more = yield self.store.list_job_types(producer.producer_id, 100, None)
        self.assertEqual(([t.name for t in listed], more), (sorted(names), False))

    @inlineCallbacks
    def test_longestNames(self):
        """
        Producer names of the most bytes the API allows (128 bytes of UTF-8,
        in characters of one to four bytes each) and job type names of the
        most characters are kept exactly, found and listed.
        """
        for name in LONGEST_NAMES:
            self.assertEqual(len(name.encode("utf-8")), 128, name)
        for name in LONGEST_JOB_TYPE_NAMES:
            self.assertEqual(len(name), 128, name)
        producers = yield self.add_producers(LONGEST_NAMES)
        for producer in producers:
            self.assertEqual((yield self.store.get_producer(producer.producer_id)), producer)
        listed, more = yield self.store.list_producers(100, None)
        self.assertEqual(([p.name for p in listed], more), (sorted(LONGEST_NAMES), False))
        owner = producers[-2]
        yield self.add_job_types(owner.producer_id, LONGEST_JOB_TYPE_NAMES)
        for name in LONGEST_JOB_TYPE_NAMES:
            fetched = yield self.store.get_job_type(owner.producer_id, name)
            self.assertEqual(fetched.name, name)
        listed, more = yield self.store.list_job_types(owner.producer_id, 100, None)
        self.assertEqual(
            ([t.name for t in listed], more), (sorted(LONGEST_JOB_TYPE_NAMES), False)
        )

    @inlineCallbacks
    def test_concurrentCreatesOfDifferentProducers(self):
        """
        20 producers created at once, without waiting for one another, are
        all registered.
        """
        producers = [make_producer(f"service-{n:02d}") for n in range(20)]
        results = yield DeferredList(
            [self.store.create_producer(p) for p in producers], consumeErrors=True
        )
        self.assertEqual([ok for ok, _ in results], [True] * 20)
        listed, more = yield self.store.list_producers(100, None)
        self.assertEqual((list(listed), more), (producers, False))

    @inlineCallbacks
    def test_concurrentCreatesOfOneName(self):
        """
        Two producers of one name created at once: exactly one is
        registered, the other fails with ``AlreadyExists``.
        """
        first, second = make_producer("billing"), make_producer("billing")
        results = yield DeferredList(
            [self.store.create_producer(first), self.store.create_producer(second)],
            consumeErrors=True,
        )
        outcomes = sorted(
            "ok" if ok else type(result.value).__name__ for ok, result in results
        )
        self.assertEqual(outcomes, ["AlreadyExists", "ok"])
        listed, _ = yield self.store.list_producers(10, None)
        [winner] = listed
        self.assertIn(winner, [first, second])

    @inlineCallbacks
    def test_concurrentCreatesOfOneJobType(self):
        """
        The same job type created twice at once: one success, one
        ``AlreadyExists``.
        """
        [producer] = yield self.add_producers(["billing"])
        results = yield DeferredList(
            [
                self.store.create_job_type(make_job_type(producer.producer_id, "send")),
                self.store.create_job_type(make_job_type(producer.producer_id, "send")),
            ],
            consumeErrors=True,
        )
        outcomes = sorted(
            "ok" if ok else type(result.value).__name__ for ok, result in results
        )
        self.assertEqual(outcomes, ["AlreadyExists", "ok"])

    @inlineCallbacks
    def test_loserOfANameHasNoJobTypes(self):
        """
        A producer refused for its name is not registered under its id:
        no job type can be created for it.
        """
        yield self.add_producers(["billing"])
        loser = make_producer("billing")
        yield self.assertFailure(self.store.create_producer(loser), AlreadyExists)
        error = yield self.assertFailure(
            self.store.create_job_type(make_job_type(loser.producer_id, "send")), NotFound
        )
        self.assertEqual(error.field, "producer_id")

    @inlineCallbacks
    def test_keepsCopies(self):
        """
        Changing the messages given to C{create_producer} and
        C{create_job_type} afterwards changes nothing the store holds.
        """
        producer = make_producer("mail")
        yield self.store.create_producer(producer)
        job_type = make_job_type(producer.producer_id, "deliver", queue=Queue.QUEUE_LOW)
        yield self.store.create_job_type(job_type)
        producer_id = producer.producer_id
        producer.name = "changed"
        job_type.queue = Queue.QUEUE_HIGH
        job_type.name = "changed"
        self.assertEqual((yield self.store.get_producer(producer_id)).name, "mail")
        stored = yield self.store.get_job_type(producer_id, "deliver")
        self.assertEqual((stored.name, stored.queue), ("deliver", Queue.QUEUE_LOW))

    @inlineCallbacks
    def test_checkAfterWrites(self):
        """
        C{check} still fires with C{True} after writes and failed writes.
        """
        [producer] = yield self.add_producers(["billing"])
        yield self.assertFailure(
            self.store.create_producer(make_producer("billing")), AlreadyExists
        )
        yield self.add_job_types(producer.producer_id, ["send"])
        self.assertIs((yield self.store.check()), True)
