"""Reading a Twisted clock as the integer nanoseconds protobuf stores."""

import math


def now_ns(clock) -> int:
    """
    C{clock.seconds()} as integer nanoseconds since the Unix epoch, rounded
    down to whole microseconds (a float of seconds holds no more precision,
    and rounding down never makes a job due early).
    """
    return math.floor(clock.seconds() * 1e6) * 1000
