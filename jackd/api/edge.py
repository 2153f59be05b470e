"""
Helpers every servicer uses: awaiting Deferreds from asyncio handlers and
turning ``JackError``s into gRPC status codes.
"""

import asyncio
import functools

import grpc
from twisted.logger import Logger
from twisted.python.failure import Failure

from jackd.errors import JackError

_log = Logger()

INTERNAL_MESSAGE = "internal error: Jack logged the details"


def status_code(error: JackError) -> grpc.StatusCode:
    """The gRPC status code a ``JackError`` stands for."""
    return grpc.StatusCode[error.code]


def describe(error) -> tuple[grpc.StatusCode, str]:
    """
    The status code and message for one failed item: a ``JackError`` maps
    to its code; anything else is a bug, logged and reported as INTERNAL.
    """
    if isinstance(error, JackError):
        return status_code(error), error.message
    failure = error if isinstance(error, Failure) else Failure(error)
    _log.failure("Bug while serving a request", failure)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


async def wait_for(d):
    """
    The result of Deferred C{d}, awaited from a grpc.aio handler (which runs
    on the same asyncio loop as Twisted's asyncio reactor).  A Deferred that
    already fired answers without a round trip through the loop.
    """
    box = []
    d.addBoth(box.append)
    if not box:
        future = asyncio.get_running_loop().create_future()
        d.addCallback(lambda _: future.done() or future.set_result(None))
        await future
    result = box[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def unary(handler):
    """
    Wrap a servicer method so that a ``JackError`` aborts the call with its
    status code and message, and any other exception (a bug) is logged and
    aborts with INTERNAL.
    """

    @functools.wraps(handler)
    async def serve(self, request, context):
        try:
            return await handler(self, request, context)
        except JackError as error:
            await context.abort(status_code(error), error.message)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception:
            _log.failure("Bug while serving {method}", method=handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return serve
