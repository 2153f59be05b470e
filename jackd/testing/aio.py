"""Running asyncio code (grpc.aio clients) from trial tests."""

import asyncio
import functools

from twisted.internet.defer import Deferred


def as_deferred(coroutine) -> Deferred:
    """Run C{coroutine} on the asyncio loop under Twisted's asyncio reactor."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


def asyncio_test(test):
    """
    Decorate an C{async def} test method that awaits asyncio things (trial
    itself would run it with C{ensureDeferred}, which cannot await them).
    Needs C{trial --reactor=asyncio}.
    """

    @functools.wraps(test)
    def run(self, *args, **kwargs):
        return as_deferred(test(self, *args, **kwargs))

    return run
