"""
Identifiers Jack hands out.

Job ids are ``job_`` followed by 26 Crockford base32 characters that encode a
48-bit count of milliseconds since the Unix epoch and 80 further bits.  Ids
sort (as strings) in the order they were made: within one millisecond the
80 bits count up from a random start, and a clock that steps back never makes
an id smaller than the one before it.  `JobIdGenerator.new_many` makes the
ids of a whole bulk at once, the same ids as that many calls of ``new`` in
one millisecond.  `job_id_time` decodes the creation time.
"""

import datetime
import os
import secrets

JOB_ID_PREFIX = "job_"
PRODUCER_ID_PREFIX = "prod_"

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_CROCKFORD = {c: i for i, c in enumerate(_CROCKFORD)}
# Every 10-bit value as its two characters: an id is 13 lookups (on the
# enqueue hot path this is a few times faster than base64.b32encode).
_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)
_RANDOM_BITS = 80
_RANDOM_LIMIT = 1 << _RANDOM_BITS
_ID_CHARS = 26
# The 130 bits of an id (the top two always zero), ten at a time, most
# significant first.
_PAIR_SHIFTS = tuple(range(5 * _ID_CHARS - 10, -1, -10))
# Consecutive ids share all but their last few characters: new_many encodes
# the top 110 bits once per run and only the last two pairs per id.
_TAIL_BITS = 20
_HEAD_SHIFTS = tuple(shift - _TAIL_BITS for shift in _PAIR_SHIFTS[:-2])


def new_producer_id() -> str:
    """A new producer id: ``prod_`` and 128 random bits, URL-safe."""
    return PRODUCER_ID_PREFIX + secrets.token_urlsafe(16)


class JobIdGenerator:
    """
    Makes job ids from a clock.

    @param clock: anything with ``seconds()`` (a reactor, a ``task.Clock``).
    @param randbytes: a source of random bytes (``os.urandom``).
    """

    def __init__(self, clock, randbytes=os.urandom):
        self._clock = clock
        self._randbytes = randbytes
        self._last_ms = -1
        self._last_random = 0

    def new(self) -> str:
        value, _ = self._reserve(int(self._clock.seconds() * 1000), 1)
        return JOB_ID_PREFIX + "".join(
            [_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS]
        )

    def new_many(self, count: int) -> list[str]:
        """
        C{count} new ids in ascending order: the ids C{count} calls of
        L{new} would make if the clock did not move between them, for one
        clock reading and at most one draw of random bytes (more only when
        the 80 bits run out within the millisecond).
        """
        ms = int(self._clock.seconds() * 1000)
        ids = []
        while len(ids) < count:
            first, run = self._reserve(ms, count - len(ids))
            _encode_run(first, run, ids)
        return ids

    def _reserve(self, ms: int, count: int) -> tuple[int, int]:
        """
        Take up to C{count} consecutive id values at clock reading C{ms}.

        @return: C{(first value, how many)}: fewer than C{count} when the
            80 bits run out within the millisecond.
        """
        if ms > self._last_ms:
            random = int.from_bytes(self._randbytes(10), "big")
        else:
            ms = self._last_ms
            random = self._last_random + 1
            if random >= _RANDOM_LIMIT:
                ms += 1
                random = int.from_bytes(self._randbytes(10), "big")
        run = min(count, _RANDOM_LIMIT - random)
        self._last_ms, self._last_random = ms, random + run - 1
        return (ms << _RANDOM_BITS) | random, run


def _encode_run(first: int, count: int, ids: list) -> None:
    """Append the ids of values C{first} to C{first + count - 1} to C{ids}."""
    head_value = head = None
    for value in range(first, first + count):
        if value >> _TAIL_BITS != head_value:
            head_value = value >> _TAIL_BITS
            head = JOB_ID_PREFIX + "".join(
                [_PAIRS[(head_value >> shift) & 1023] for shift in _HEAD_SHIFTS]
            )
        ids.append(head + _PAIRS[(value >> 10) & 1023] + _PAIRS[value & 1023])


def job_id_time(job_id: str) -> datetime.datetime:
    """
    The moment (UTC, millisecond precision) a job id was made.

    @raise ValueError: C{job_id} is not a Jack job id.
    """
    body = job_id[len(JOB_ID_PREFIX):]
    if not job_id.startswith(JOB_ID_PREFIX) or len(body) != _ID_CHARS:
        raise ValueError(f"not a job id: {job_id!r}")
    value = 0
    for char in body:
        try:
            value = (value << 5) | _FROM_CROCKFORD[char]
        except KeyError:
            raise ValueError(f"not a job id: {job_id!r}") from None
    if value >> 128:
        raise ValueError(f"not a job id: {job_id!r}")
    ms = value >> _RANDOM_BITS
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return epoch + datetime.timedelta(milliseconds=ms)
