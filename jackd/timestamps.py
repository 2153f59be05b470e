"""Reading a Twisted clock as the integer nanoseconds protobuf stores."""


def now_ns(clock) -> int:
    """
    C{clock.seconds()} as integer nanoseconds since the Unix epoch, rounded
    to whole microseconds (a float of seconds holds no more precision).
    """
    return round(clock.seconds() * 1e6) * 1000
