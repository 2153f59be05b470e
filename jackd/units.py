"""Parsing of durations and sizes as operators write them in settings."""

import re

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*\Z")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

_SIZE = re.compile(r"\s*(\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*\Z")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
}


def parse_duration(text: str) -> float:
    """
    Seconds in C{text}: a number with an optional unit, C{ms}, C{s}, C{m},
    C{h} or C{d} (C{500ms}, C{30s}, C{30d}); a bare number is seconds.

    @raise ValueError: C{text} is not such a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration (a number with an optional unit "
            "ms, s, m, h or d, such as 500ms, 30s or 30d)"
        )
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """
    Bytes in C{text}: a whole number with an optional unit, C{B}, C{KB},
    C{MB}, C{GB} (powers of 1000) or C{KiB}, C{MiB}, C{GiB} (powers of 1024).

    @raise ValueError: C{text} is not such a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a size (a whole number of bytes with an optional "
            "unit B, KB, MB, GB, KiB, MiB or GiB, such as 1MiB)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
