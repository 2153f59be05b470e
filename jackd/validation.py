"""
What Jack accepts in a request, checked before anything is stored or
published.  Every check raises ``InvalidArgument`` naming the field.
"""

import re
import unicodedata
from dataclasses import dataclass

from jackd.errors import InvalidArgument

MAX_NAME_BYTES = 128
MAX_DESCRIPTION_BYTES = 4096
MAX_TRACE_ID_BYTES = 1024
MAX_ID_BYTES = 128
MAX_RETRIES = 100
DEFAULT_MAX_RETRIES = 3

# Job type names travel in message attributes, subscription filters and
# storage object keys: ASCII letters and digits, then also "_", "-", ".".
JOB_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")
JOB_TYPE_NAME_RULE = (
    "must be 1 to 128 characters from A-Z, a-z, 0-9, '_', '-' and '.', "
    "starting with a letter or digit"
)

# google.protobuf.Timestamp's valid range: 0001-01-01T00:00:00Z to
# 9999-12-31T23:59:59.999999999Z.
MIN_TIMESTAMP_SECONDS = -62135596800
MAX_TIMESTAMP_SECONDS = 253402300799


@dataclass(frozen=True)
class Limits:
    """Sizes Jack refuses to go past (the MAX_* settings)."""

    max_payload_bytes: int = 1024 * 1024
    max_bulk_jobs: int = 1000
    max_bulk_bytes: int = 10 * 1024 * 1024
    # Seconds: how far ahead of now a run_at may be (MAX_SCHEDULE_AHEAD).
    max_schedule_ahead: float = 30 * 86400

    def grpc_receive_bytes(self) -> int:
        """
        The gRPC receive limit that follows from these limits: the largest
        request Jack itself must read to answer INVALID_ARGUMENT, plus
        headroom for field framing.  Anything larger is refused by gRPC with
        RESOURCE_EXHAUSTED before Jack reads it.
        """
        largest_single = self.max_payload_bytes + MAX_TRACE_ID_BYTES + 2 * MAX_ID_BYTES
        return max(self.max_bulk_bytes, largest_single) + 64 * 1024


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def check_required(field: str, value: str) -> None:
    if not value:
        raise InvalidArgument(field, "is required")


def check_id(field: str, value: str) -> None:
    """A required id field of bounded size (ids are looked up, not parsed)."""
    check_required(field, value)
    if _utf8_len(value) > MAX_ID_BYTES:
        raise InvalidArgument(field, f"is longer than {MAX_ID_BYTES} bytes")


# Characters a display name may not hold: controls (Cc), surrogates (Cs),
# line and paragraph separators (Zl, Zp) and invisible format characters
# (Cf, such as bidirectional overrides and zero-width spaces), except the
# zero-width (non-)joiners that scripts and emoji sequences need.
_FORBIDDEN_CATEGORIES = {"Cc", "Cs", "Zl", "Zp", "Cf"}
_ALLOWED_FORMAT = {"\u200c", "\u200d"}


def normalize_producer_name(name: str) -> str:
    """
    A display name checked and in Unicode NFC, so that names that look the
    same (``café`` composed or decomposed) are the same name.

    @raise InvalidArgument: blank, over 128 bytes, or holding control or
        invisible formatting characters.
    """
    field = "name"
    name = unicodedata.normalize("NFC", name)
    for char in name:
        if (
            unicodedata.category(char) in _FORBIDDEN_CATEGORIES
            and char not in _ALLOWED_FORMAT
        ):
            raise InvalidArgument(
                field,
                "must not contain control or invisible formatting characters "
                f"(found U+{ord(char):04X})",
            )
    if not "".join(c for c in name if c not in _ALLOWED_FORMAT).strip():
        raise InvalidArgument(field, "is required and must not be blank")
    if _utf8_len(name) > MAX_NAME_BYTES:
        raise InvalidArgument(field, f"is longer than {MAX_NAME_BYTES} bytes (UTF-8)")
    return name


def check_job_type_name(field: str, name: str) -> None:
    check_required(field, name)
    if not JOB_TYPE_NAME.match(name):
        raise InvalidArgument(field, JOB_TYPE_NAME_RULE)


def check_description(description: str) -> None:
    if _utf8_len(description) > MAX_DESCRIPTION_BYTES:
        raise InvalidArgument(
            "description", f"is longer than {MAX_DESCRIPTION_BYTES} bytes (UTF-8)"
        )


def check_max_retries(value: int) -> None:
    if not 0 <= value <= MAX_RETRIES:
        raise InvalidArgument("max_retries", f"must be between 0 and {MAX_RETRIES}")


def check_timestamp(field: str, timestamp) -> None:
    """A ``google.protobuf.Timestamp`` within the range the type defines."""
    if not MIN_TIMESTAMP_SECONDS <= timestamp.seconds <= MAX_TIMESTAMP_SECONDS:
        raise InvalidArgument(
            field, "is not a valid Timestamp: seconds out of range (years 1 to 9999)"
        )
    if not 0 <= timestamp.nanos <= 999_999_999:
        raise InvalidArgument(
            field, "is not a valid Timestamp: nanos must be 0 to 999999999"
        )


def check_schedule_ahead(field: str, run_at_ns: int, now_ns: int, max_ahead: float) -> None:
    """
    A C{run_at} no further than C{max_ahead} seconds after C{now_ns}.

    @raise InvalidArgument: it is further ahead.
    """
    ahead = run_at_ns - now_ns
    if ahead > round(max_ahead * 1_000_000_000):
        raise InvalidArgument(
            field,
            f"is {_days(ahead / 1e9)} ahead; at most {_days(max_ahead)} "
            "(MAX_SCHEDULE_AHEAD) are allowed",
        )


def _days(seconds: float) -> str:
    """C{seconds} in days, or in seconds when under a day: C{45.5d}, C{90s}."""
    if seconds >= 86400:
        return f"{seconds / 86400:.6g}d"
    return f"{seconds:.6g}s"
