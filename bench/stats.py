"""
Latency histograms and small statistics shared by the load processes and
the report.  Latencies are recorded in microseconds in an HdrHistogram and
travel between processes in its compressed, base64 encoding.
"""

import statistics

from hdrh.histogram import HdrHistogram

# 1 µs to 120 s at 3 significant digits.
LOWEST_US = 1
HIGHEST_US = 120_000_000
DIGITS = 3

PERCENTILES = (50.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record(histogram: HdrHistogram, seconds: float) -> None:
    """Record one latency given in seconds (clamped into the range)."""
    histogram.record_value(min(max(int(seconds * 1e6), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def merge(encoded) -> HdrHistogram:
    """One histogram holding every value of the C{encoded} histograms."""
    merged = new_histogram()
    for text in encoded:
        if text:
            merged.decode_and_add(text.encode("ascii"))
    return merged


def summarize(histogram: HdrHistogram) -> dict:
    """
    @return: C{count} and, in milliseconds, C{p50}, C{p99}, C{p99.9} and
        C{max} (C{None} each when the histogram is empty).
    """
    count = histogram.get_total_count()
    summary = {"count": count}
    for percentile in PERCENTILES:
        key = f"p{percentile:g}"
        summary[key] = (
            histogram.get_value_at_percentile(percentile) / 1000 if count else None
        )
    summary["max"] = histogram.get_max_value() / 1000 if count else None
    return summary


def median(values):
    """The median of C{values}, or C{None} when there are none."""
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    """C{(min, max)} of C{values}, or C{(None, None)}."""
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)
