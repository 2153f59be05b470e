"""
Configuration storage in this process's memory: the development default.
Producers and job types are lost when Jack stops.
"""

import bisect

from twisted.application.service import Service
from twisted.internet.defer import fail, succeed
from twisted.logger import Logger
from zope.interface import implementer

from jack.admin_pb2 import JobType, Producer
from jackd.errors import AlreadyExists, NotFound
from jackd.interfaces import IConfigStore


def _page(names, lookup, page_size, after):
    start = 0 if after is None else bisect.bisect_right(names, after)
    chosen = names[start : start + page_size]
    return [lookup(name) for name in chosen], start + page_size < len(names)


def _unknown_producer(producer_id):
    return NotFound("producer_id", f"no producer {producer_id!r} is registered")


@implementer(IConfigStore)
class MemoryConfigStore(Service):
    _log = Logger()

    description = "memory (producers and job types are lost when Jack stops)"

    def __init__(self):
        self._producers = {}  # producer_id -> Producer
        self._ids_by_name = {}  # name -> producer_id
        self._names = []  # sorted producer names
        self._job_types = {}  # producer_id -> {name: JobType}
        self._job_type_names = {}  # producer_id -> sorted names

    def startService(self):
        super().startService()
        self._log.warn(
            "Config storage is in memory: producers and job types are lost "
            "when Jack stops"
        )

    def create_producer(self, producer):
        if producer.name in self._ids_by_name:
            return fail(
                AlreadyExists(f"name: a producer named {producer.name!r} already exists")
            )
        stored = Producer()
        stored.CopyFrom(producer)
        self._producers[stored.producer_id] = stored
        self._ids_by_name[stored.name] = stored.producer_id
        bisect.insort(self._names, stored.name)
        self._job_types[stored.producer_id] = {}
        self._job_type_names[stored.producer_id] = []
        return succeed(stored)

    def get_producer(self, producer_id):
        try:
            return succeed(self._producers[producer_id])
        except KeyError:
            return fail(_unknown_producer(producer_id))

    def list_producers(self, page_size, after):
        lookup = lambda name: self._producers[self._ids_by_name[name]]
        return succeed(_page(self._names, lookup, page_size, after))

    def create_job_type(self, job_type):
        types = self._job_types.get(job_type.producer_id)
        if types is None:
            return fail(_unknown_producer(job_type.producer_id))
        if job_type.name in types:
            return fail(
                AlreadyExists(
                    f"name: producer {job_type.producer_id!r} already has a job "
                    f"type named {job_type.name!r}"
                )
            )
        stored = JobType()
        stored.CopyFrom(job_type)
        types[stored.name] = stored
        bisect.insort(self._job_type_names[stored.producer_id], stored.name)
        return succeed(stored)

    def get_job_type(self, producer_id, name):
        types = self._job_types.get(producer_id)
        if types is None:
            return fail(_unknown_producer(producer_id))
        try:
            return succeed(types[name])
        except KeyError:
            return fail(
                NotFound(
                    "job_type",
                    f"producer {producer_id!r} has no job type {name!r}",
                )
            )

    def list_job_types(self, producer_id, page_size, after):
        types = self._job_types.get(producer_id)
        if types is None:
            return fail(_unknown_producer(producer_id))
        names = self._job_type_names[producer_id]
        return succeed(_page(names, types.__getitem__, page_size, after))

    def check(self):
        return succeed(True)


def from_options(options, reactor):
    """The store when ``GCS_BUCKET`` is unset."""
    return MemoryConfigStore()
