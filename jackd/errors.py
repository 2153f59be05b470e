"""
The errors Jack's domain code raises.

Each class names the gRPC status it stands for (``code``) as a plain string,
so that nothing below ``jackd.api`` imports gRPC; only the API edge turns
them into status codes.  A message names the field and what is wrong with
its value, never a stack trace.
"""


class ConfigError(Exception):
    """
    Jack cannot start with this configuration, or cannot reach what it
    names (a topic, a bucket, a database); the message says which and why,
    in one line for the operator.  Not a ``JackError``: no caller sees it.
    """


class JackError(Exception):
    """
    A failure Jack reports to its caller.

    @cvar code: the name of the gRPC status code this error maps to.
    """

    code = "UNKNOWN"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.message == other.message

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class _FieldError(JackError):
    """An error about one field of the request, named first in the message."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class InvalidArgument(_FieldError):
    """A field of the request is missing or malformed."""

    code = "INVALID_ARGUMENT"


class NotFound(_FieldError):
    """The producer or job type a request names is not registered."""

    code = "NOT_FOUND"


class AlreadyExists(JackError):
    """A producer name or job type that is already registered."""

    code = "ALREADY_EXISTS"


class FailedPrecondition(JackError):
    """The request is valid but the system is not in a state to serve it."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(JackError):
    """A limit on what Jack holds at once is reached; retry later."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(JackError):
    """A dependency (queue backend, storage) cannot be reached; retryable."""

    code = "UNAVAILABLE"
