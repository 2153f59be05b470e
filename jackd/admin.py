"""
Producer and job type management: validation, ids, defaults and paging over
an ``IConfigStore``.  Deferred-based; nothing here knows about gRPC.
"""

import base64
import binascii

from twisted.internet.defer import Deferred, fail

from jack.admin_pb2 import JobType, Producer
from jack.job_pb2 import Queue
from jackd import validation
from jackd.timestamps import now_ns
from jackd.errors import InvalidArgument, JackError
from jackd.ids import new_producer_id

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
DEFAULT_QUEUE = Queue.QUEUE_MEDIUM


class Admin:
    """
    @param store: an ``IConfigStore``.
    @param clock: an ``IReactorTime`` (creation times).
    """

    def __init__(self, store, clock):
        self._store = store
        self._clock = clock

    def create_producer(self, name: str, description: str) -> Deferred:
        """
        @return: Deferred firing with the new ``jack.Producer``; failing with
            ``InvalidArgument`` or ``AlreadyExists``.
        """
        try:
            name = validation.normalize_producer_name(name)
            validation.check_description(description)
        except JackError:
            return fail()
        producer = Producer(
            producer_id=new_producer_id(), name=name, description=description
        )
        producer.created_at.FromNanoseconds(now_ns(self._clock))
        return self._store.create_producer(producer)

    def get_producer(self, producer_id: str) -> Deferred:
        try:
            validation.check_id("producer_id", producer_id)
        except JackError:
            return fail()
        return self._store.get_producer(producer_id)

    def list_producers(self, page_size: int, page_token: str) -> Deferred:
        """
        @return: Deferred firing with C{(producers, next_page_token)}.
        """
        try:
            size = _page_size(page_size)
            after = _decode_token(page_token, "producers")
        except JackError:
            return fail()
        d = self._store.list_producers(size, after)
        d.addCallback(_with_token, "producers", lambda p: p.name)
        return d

    def create_job_type(
        self, producer_id, name, queue, max_retries, description
    ) -> Deferred:
        """
        @param queue: a ``jack.Queue`` number; ``QUEUE_UNSPECIFIED`` means
            ``QUEUE_MEDIUM``.
        @param max_retries: an int, or C{None} for the default (3).
        @return: Deferred firing with the new ``jack.JobType``; failing with
            ``InvalidArgument``, ``NotFound`` or ``AlreadyExists``.
        """
        if max_retries is None:
            max_retries = validation.DEFAULT_MAX_RETRIES
        try:
            validation.check_id("producer_id", producer_id)
            validation.check_job_type_name("name", name)
            validation.check_max_retries(max_retries)
            validation.check_description(description)
            if queue not in Queue.values():
                raise InvalidArgument("queue", f"{queue} is not a known queue")
        except JackError:
            return fail()
        job_type = JobType(
            producer_id=producer_id,
            name=name,
            queue=queue or DEFAULT_QUEUE,
            max_retries=max_retries,
            description=description,
        )
        job_type.created_at.FromNanoseconds(now_ns(self._clock))
        return self._store.create_job_type(job_type)

    def list_job_types(self, producer_id, page_size, page_token) -> Deferred:
        """
        @return: Deferred firing with C{(job_types, next_page_token)}.
        """
        kind = f"job_types:{producer_id}"
        try:
            validation.check_id("producer_id", producer_id)
            size = _page_size(page_size)
            after = _decode_token(page_token, kind)
        except JackError:
            return fail()
        d = self._store.list_job_types(producer_id, size, after)
        d.addCallback(_with_token, kind, lambda t: t.name)
        return d


def _page_size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    if page_size > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be at most {MAX_PAGE_SIZE}")
    return page_size or DEFAULT_PAGE_SIZE


# A page token is opaque to callers: URL-safe base64 of the name of the list
# it belongs to, a NUL, and the sort key of the last item returned (names
# never hold control characters).
MAX_PAGE_TOKEN_CHARS = 2048


def _encode_token(kind: str, after: str) -> str:
    raw = f"{kind}\0{after}".encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _decode_token(token: str, kind: str):
    if not token:
        return None
    if len(token) <= MAX_PAGE_TOKEN_CHARS:
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
        except (ValueError, UnicodeError, binascii.Error):
            pass
        else:
            token_kind, nul, after = raw.partition("\0")
            if nul and token_kind == kind:
                return after
    raise InvalidArgument("page_token", "is not a token this list returned")


def _with_token(page, kind, key):
    items, more = page
    token = _encode_token(kind, key(items[-1])) if more and items else ""
    return items, token
