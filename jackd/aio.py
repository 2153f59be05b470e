"""Running asyncio code (grpc.aio clients: the console, tests) from Twisted."""

import asyncio

from twisted.internet.defer import Deferred


def as_deferred(coroutine) -> Deferred:
    """Run C{coroutine} on the asyncio loop under Twisted's asyncio reactor."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))
