"""
Tests for L{jackd.storage.memory.MemoryConfigStore}.
"""

import random

from twisted.trial import unittest

from jack.job_pb2 import Queue
from jackd.errors import NotFound
from jackd.storage.memory import MemoryConfigStore
from jackd.test.store_mixin import ConfigStoreTestsMixin, make_job_type, make_producer


class MemoryConfigStoreTests(ConfigStoreTestsMixin, unittest.TestCase):
    """
    L{MemoryConfigStore} passes the ``IConfigStore`` conformance suite.
    """

    def make_store(self):
        return MemoryConfigStore()


class MemoryConfigStoreOnlyTests(unittest.SynchronousTestCase):
    """
    What only the in-memory store promises: it answers at once (no I/O), so
    these tests read results synchronously, and it holds copies of what it
    is given.
    """

    def setUp(self):
        self.store = MemoryConfigStore()
        self.producer = self.successResultOf(
            self.store.create_producer(make_producer("billing"))
        )

    def test_answersSynchronously(self):
        """
        Every C{MemoryConfigStore} method returns a Deferred that has
        already fired, so lookups on the enqueue hot path cost no reactor
        turn.
        """
        job_type = make_job_type(self.producer.producer_id, "send")
        self.assertEqual(self.successResultOf(self.store.create_job_type(job_type)), job_type)
        self.assertEqual(
            self.successResultOf(self.store.get_job_type(self.producer.producer_id, "send")),
            job_type,
        )
        self.assertEqual(
            self.successResultOf(self.store.get_producer(self.producer.producer_id)),
            self.producer,
        )
        failure = self.failureResultOf(
            self.store.get_job_type(self.producer.producer_id, "nope"), NotFound
        )
        self.assertEqual(failure.value.field, "job_type")
        self.assertIs(self.successResultOf(self.store.check()), True)

    def test_keepsCopies(self):
        """
        Changing the messages passed to C{create_producer} and
        C{create_job_type} afterwards changes nothing the store holds.
        """
        producer = make_producer("mail")
        self.successResultOf(self.store.create_producer(producer))
        job_type = make_job_type(producer.producer_id, "deliver", queue=Queue.QUEUE_LOW)
        self.successResultOf(self.store.create_job_type(job_type))
        producer.name = "changed"
        producer.description = "changed"
        job_type.queue = Queue.QUEUE_HIGH
        job_type.name = "changed"
        stored = self.successResultOf(self.store.get_producer(producer.producer_id))
        self.assertEqual(stored.name, "mail")
        self.assertNotEqual(stored.description, "changed")
        stored_type = self.successResultOf(
            self.store.get_job_type(producer.producer_id, "deliver")
        )
        self.assertEqual((stored_type.name, stored_type.queue), ("deliver", Queue.QUEUE_LOW))

    def test_tenThousandJobTypesPage(self):
        """
        10,000 job types created in random order list in name order, page
        after page, each exactly once, and only the last page says no more
        follow.
        """
        names = [f"type-{n:05d}" for n in range(10_000)]
        shuffled = names[:]
        random.Random(1234).shuffle(shuffled)
        producer_id = self.producer.producer_id
        for name in shuffled:
            self.successResultOf(
                self.store.create_job_type(make_job_type(producer_id, name))
            )
        seen, after, pages = [], None, 0
        while True:
            listed, more = self.successResultOf(
                self.store.list_job_types(producer_id, 333, after)
            )
            pages += 1
            seen.extend(t.name for t in listed)
            if not more:
                break
            after = listed[-1].name
        self.assertEqual(seen, names)
        self.assertEqual(pages, 31)  # 30 full pages of 333, then 10
