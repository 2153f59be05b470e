"""
Helpers every servicer uses: awaiting Deferreds from asyncio handlers and
turning ``JackError``s into gRPC status codes.
"""

import asyncio
import functools

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from twisted.internet.defer import Deferred
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


def as_deferred(coroutine) -> Deferred:
    """Run C{coroutine} on the asyncio loop under Twisted's asyncio reactor."""
    return Deferred.fromFuture(asyncio.ensure_future(coroutine))


def add_servicer(server, service, servicer) -> str:
    """
    Serve C{service} (a protobuf ``ServiceDescriptor`` of unary methods)
    with C{servicer}'s methods of the same names.

    Unlike the generated ``add_*_to_server``, requests arrive as bytes and
    are decoded here, so a malformed request (such as a string field that is
    not UTF-8) answers INVALID_ARGUMENT instead of gRPC's UNKNOWN.

    @return: the service's full name.
    """
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _decoding(getattr(servicer, method.name), GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    return service.full_name


def _decoding(handler, request_class):
    async def decode_and_serve(data, context):
        try:
            request = request_class.FromString(data)
        except DecodeError as error:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a valid {request_class.DESCRIPTOR.full_name} ({error})",
            )
        return await handler(request, context)

    return decode_and_serve


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
