"""
How gRPC reaches Jack's Deferred-based code, and how ``JackError``s become
gRPC status codes.

Jack serves gRPC with grpcio's threaded server.  A call arrives on one of the
server's threads, is decoded there, then runs on the reactor thread through
a L{ReactorHop}: the servicer methods are ordinary Deferred-returning code
and never see a thread.  The hop wakes the reactor once per batch of calls
that arrived together, not once per call (see ``bench/results/NOTES.md``
for why this model and not grpc.aio).
"""

import threading

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jackd.errors import JackError
from jackd.threads import ReactorQueue

_log = Logger()

INTERNAL_MESSAGE = "internal error: Jack logged the details"


def status_code(error: JackError) -> grpc.StatusCode:
    """The gRPC status code a ``JackError`` stands for."""
    return grpc.StatusCode[error.code]


def describe(error) -> tuple[grpc.StatusCode, str]:
    """
    The status code and message for one failed item: a ``JackError`` maps
    to its code; anything else is a bug, logged and reported as INTERNAL.
    On the reactor thread (it may log).
    """
    if isinstance(error, JackError):
        return status_code(error), error.message
    failure = error if isinstance(error, Failure) else Failure(error)
    _log.failure("Bug while serving a request", failure)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class Refusal:
    """A call's answer when it fails: the status code and message to abort with."""

    __slots__ = ("code", "message")

    def __init__(self, code: grpc.StatusCode, message: str):
        self.code = code
        self.message = message


class ShuttingDown(Exception):
    """The hop was closed while a call waited for its answer."""


class ReactorHop:
    """
    Runs Deferred-returning functions on the reactor thread for other
    threads, which block until the Deferred fires.

    A caller queues its call (a L{ReactorQueue}: calls that arrive together
    cost one wake-up of the reactor, not one each) and waits on a lock of
    its own.

    @param reactor: the reactor; it must be running for calls to finish.
    @param executor: the gRPC handler threads that wait in L{call} (a
        C{ThreadPoolExecutor}, given to grpcio as the handlers'
        C{experimental_thread_pool}), so that calls waiting for Jack cannot
        take every thread of the server's own pool (health checks);
        C{None}: the server's pool.
    """

    def __init__(self, reactor, executor=None):
        self.executor = executor
        self._queued = ReactorQueue(reactor, self._run)
        self._lock = threading.Lock()
        self._waiting = set()  # calls not answered yet (for close)
        self._closed = False

    def call(self, function, *args):
        """
        From a thread that is not the reactor's: C{function(*args)} run on
        the reactor thread, and the result of the Deferred it returns.

        @raise ShuttingDown: the hop was closed before the answer came.
        @raise Exception: whatever C{function} raised or failed with.
        """
        call = _Call(function, args)
        with self._lock:
            if self._closed:
                raise ShuttingDown()
            self._waiting.add(call)
        self._queued.put(call)
        call.done.acquire()
        with self._lock:
            self._waiting.discard(call)
        result = call.result
        if isinstance(result, Failure):
            result.raiseException()
        return result

    def _run(self, calls):
        for call in calls:
            if not call.answered:  # close() answered it already: never run
                maybeDeferred(call.function, *call.args).addBoth(call.answer)

    def close(self):
        """
        Answer every call still waiting with L{ShuttingDown}, and refuse new
        ones: after the gRPC server stopped, no thread may wait for ever.
        """
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, set()
        for call in waiting:
            call.answer(Failure(ShuttingDown()))


class _Call:
    __slots__ = ("function", "args", "done", "result", "answered")

    def __init__(self, function, args):
        self.function = function
        self.args = args
        self.done = threading.Lock()
        self.done.acquire()
        self.result = None
        self.answered = False

    def answer(self, result):
        """
        On the reactor thread: the first answer wins (the Deferred may fire
        after close() answered).
        """
        if not self.answered:
            self.answered = True
            self.result = result
            self.done.release()


def add_servicer(server, service, servicer, hop) -> str:
    """
    Serve C{service} (a protobuf ``ServiceDescriptor`` of unary methods)
    with C{servicer}'s methods of the same names, each taking the decoded
    request and returning a Deferred (or a value) on the reactor thread.
    A method's ``JackError`` answers with its status code and message; any
    other exception is a bug, logged and answered INTERNAL.

    Requests arrive as bytes and are decoded here, so a malformed request
    (such as a string field that is not UTF-8) answers INVALID_ARGUMENT
    instead of gRPC's UNKNOWN.

    @param hop: the L{ReactorHop} the calls take to the reactor thread.
    @return: the service's full name.
    """
    handlers = {}
    for method in service.methods:
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            _handler(getattr(servicer, method.name), GetMessageClass(method.input_type), hop),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    return service.full_name


def serving(method):
    """
    The reactor side of a call to servicer C{method}: a function taking the
    decoded request and returning a Deferred that fires with the response,
    or with a L{Refusal} (never fails).
    """

    def serve(request):
        d = maybeDeferred(method, request)
        d.addErrback(_refusal, method.__name__)
        return d

    return serve


def _handler(method, request_class, hop):
    serve = serving(method)

    def decode_and_serve(data, context):
        try:
            request = request_class.FromString(data)
        except DecodeError as error:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: not a valid {request_class.DESCRIPTOR.full_name} ({error})",
            )
        try:
            answer = hop.call(serve, request)
        except ShuttingDown:
            context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "Jack is shutting down: retry on another replica",
            )
        if isinstance(answer, Refusal):
            context.abort(answer.code, answer.message)
        return answer

    decode_and_serve.__name__ = method.__name__
    if hop.executor is not None:
        decode_and_serve.experimental_thread_pool = hop.executor
    return decode_and_serve


def _refusal(failure, name) -> Refusal:
    if failure.check(JackError):
        return Refusal(status_code(failure.value), failure.value.message)
    _log.failure("Bug while serving {method}", failure, method=name)
    return Refusal(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
