"""
Tests for L{jackd.scheduler.memory.MemoryScheduleStore}.
"""

from twisted.trial import unittest

from jackd.scheduler.memory import MemoryScheduleStore
from jackd.test.schedule_store_mixin import ScheduleStoreTestsMixin


class MemoryScheduleStoreTests(ScheduleStoreTestsMixin, unittest.TestCase):
    """
    L{MemoryScheduleStore} passes the ``IScheduleStore`` conformance suite.
    """

    def make_store(self):
        return MemoryScheduleStore()

    def test_notDurable(self):
        """
        L{MemoryScheduleStore} says its jobs do not survive a restart, so
        the scheduler warns about what it holds when Jack stops.
        """
        self.assertIs(self.store.durable, False)
        self.assertIn("lost", self.store.description)
