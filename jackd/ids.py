"""
Identifiers Jack hands out.

Job ids are ``job_`` followed by 26 Crockford base32 characters that encode a
48-bit count of milliseconds since the Unix epoch and 80 further bits.  Ids
sort (as strings) in the order they were made: within one millisecond the
80 bits count up from a random start, and a clock that steps back never makes
an id smaller than the one before it.  `job_id_time` decodes the creation
time.
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
        ms = int(self._clock.seconds() * 1000)
        if ms > self._last_ms:
            random = int.from_bytes(self._randbytes(10), "big")
        else:
            ms = self._last_ms
            random = self._last_random + 1
            if random >= _RANDOM_LIMIT:
                ms += 1
                random = int.from_bytes(self._randbytes(10), "big")
        self._last_ms, self._last_random = ms, random
        value = (ms << _RANDOM_BITS) | random
        return JOB_ID_PREFIX + "".join(
            [_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS]
        )


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
