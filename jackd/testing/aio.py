"""Running asyncio code (grpc.aio clients) from trial tests."""

import functools

from jackd.aio import as_deferred


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
