"""
The console's HTTP side: its routes, CSRF protection for the forms, and
Jack's gRPC errors turned into readable messages.

Pages::

    GET  /producers[?page_token=]                  the producers
    GET  /producers/new                            the "new producer" form
    POST /producers                                create one, then see it
    GET  /producers/ID[?page_token=]               a producer and its job types
    GET  /producers/ID/job-types/new               the "new job type" form
    POST /producers/ID/job-types                   create one, then see it

Every request must name the console in its ``Host`` header (else 400), and
a POST must come from one of the console's own pages (its ``Origin``) and
carry the CSRF token made for the browser's session cookie (``HttpOnly``,
``SameSite=Lax``), else 403; see ``jackd.console.guard``.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

import grpc
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from jack.admin_pb2 import Producer
from jack.job_pb2 import Queue
from jackd.aio import as_deferred
from jackd.console import pages
from jackd.console.guard import SESSION_COOKIE
from jackd.console.style import CSS

_FIELD = re.compile(r"([a-z_]+): ")

SECURITY_HEADERS = {
    b"Content-Security-Policy": (
        b"default-src 'none'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"same-origin",
}

# Plain, so that it shows even when rendering pages is what broke.
BUG_PAGE = (
    b"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8>"
    b"<meta name=viewport content='width=device-width, initial-scale=1'>"
    b"<title>Something went wrong \xc2\xb7 Jack Console</title>"
    b"<h1>Something went wrong</h1>"
    b"<p>The console hit a bug; its log has the details. <a href=/producers>Producers</a></p>"
)

# Plain too: the page of a host that is not this console says nothing of it.
UNKNOWN_HOST_PAGE = (
    b"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Unknown host</title>"
    b"<h1>Unknown host</h1>"
    b"<p>This console does not answer to this host name. Operators can allow it "
    b"with CONSOLE_ALLOWED_HOSTS.</p>"
)


@dataclass
class Problem:
    """
    What went wrong, for a person: an HTTP status, a title, a message, and
    the form field it is about (Jack's messages start with the field's name).
    """

    status: int
    title: str
    message: str
    field: str | None = None


@dataclass
class Response:
    status: int
    body: bytes
    content_type: bytes = b"text/html; charset=utf-8"
    headers: dict = field(default_factory=dict)


def _redirect(url):
    return Response(303, b"", headers={b"Location": url.encode("ascii")})


class _Call:
    """
    One request as the handlers see it: its form and query values as text,
    its session (the cookie's, or a new one to set) and that session's CSRF
    token.
    """

    def __init__(self, request, guard):
        self.request = request
        self.gone = False
        self.guard = guard
        self.session = guard.session_of(request.getCookie(SESSION_COOKIE))
        self.new_session = self.session is None
        if self.new_session:
            self.session = guard.new_session()
        self.token = guard.csrf_token(self.session)

    def arg(self, name):
        """
        The first value of form or query field C{name}, or "".

        @raise UnicodeDecodeError: it is not UTF-8.
        """
        values = self.request.args.get(name.encode("ascii"))
        return values[0].decode("utf-8") if values else ""

    def form_ok(self):
        """
        Whether this POST comes from a page of the console, with the token
        of the session in its cookie (a cookie must exist).
        """
        if not self.guard.same_origin(*(
            self.request.getHeader(name)
            for name in (b"host", b"origin", b"referer", b"sec-fetch-site")
        )):
            return False
        if self.new_session:
            return False
        sent = self.request.args.get(pages.CSRF_FIELD.encode("ascii"), [b""])[0]
        return self.guard.csrf_ok(self.session, sent)

    def notice_proof(self, *about):
        """See ``Guard.notice_proof``: for this session."""
        return self.guard.notice_proof(self.session, *about)

    def notice_ok(self, proof, *about):
        """See ``Guard.notice_ok``: for this session (a new one has none)."""
        return not self.new_session and self.guard.notice_ok(self.session, proof, *about)


class Console(Resource):
    """
    The whole console as one resource: it routes on the path itself.

    @param client: a ``jackd.console.client.AdminClient``.
    @param page_size: items on one page of a list.
    @param guard: the ``jackd.console.guard.Guard`` that checks hosts,
        origins and tokens.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, client, page_size, guard):
        super().__init__()
        self._client = client
        self._page_size = page_size
        self._guard = guard
        self._routes = [
            (r"/", {"GET": self._home}),
            (r"/producers", {"GET": self._producers, "POST": self._create_producer}),
            (r"/producers/new", {"GET": self._new_producer}),
            (r"/producers/([^/]+)", {"GET": self._producer}),
            (r"/producers/([^/]+)/job-types/new", {"GET": self._new_job_type}),
            (r"/producers/([^/]+)/job-types", {"POST": self._create_job_type}),
            (r"/static/console\.css", {"GET": self._stylesheet}),
        ]

    @property
    def _address(self):
        return self._client.address

    def render(self, request):
        if not self._guard.host_allowed(request.getHeader(b"host")):
            return self._unknown_host(request)
        call = _Call(request, self._guard)
        request.notifyFinish().addErrback(lambda _: setattr(call, "gone", True))
        d = as_deferred(self._respond(call))
        d.addErrback(self._bug, call)
        d.addCallback(self._send, call)
        d.addErrback(lambda failure: self._log.failure("Sending a console page failed", failure))
        return NOT_DONE_YET

    async def _respond(self, call):
        request = call.request
        path = request.path.decode("latin-1")
        method = request.method.decode("ascii", "replace")
        if method == "HEAD":
            method = "GET"
        for pattern, handlers in self._routes:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            handler = handlers.get(method)
            if handler is None:
                allowed = ", ".join(sorted(handlers)).encode("ascii")
                response = self._problem_page(
                    Problem(405, "Method not allowed", f"{path} takes {allowed.decode()}.")
                )
                response.headers[b"Allow"] = allowed
                return response
            if method == "POST" and not call.form_ok():
                return self._forbidden()
            args = [unquote(group, errors="replace") for group in match.groups()]
            try:
                return await handler(call, *args)
            except grpc.aio.AioRpcError as error:
                return self._problem_page(self._rpc_problem(error))
            except UnicodeDecodeError:
                return self._problem_page(
                    Problem(400, "Not UTF-8", "The form or address was not UTF-8 text.")
                )
        return self._problem_page(Problem(404, "Not found", f"Nothing at {path}."))

    def _unknown_host(self, request):
        self._log.info(
            "Refused a request for host {host} (not in CONSOLE_ALLOWED_HOSTS)",
            host=request.getHeader(b"host").decode("latin-1"),
        )
        request.setResponseCode(400)
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return UNKNOWN_HOST_PAGE

    def _bug(self, failure, call):
        self._log.failure("Bug in the console serving {path}", failure,
                          path=call.request.path.decode("latin-1"))
        return Response(500, BUG_PAGE)

    def _send(self, response, call):
        request = call.request
        if call.gone:
            return
        request.setResponseCode(response.status)
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", response.content_type)
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Content-Length", str(len(response.body)).encode("ascii"))
        for name, value in response.headers.items():
            request.setHeader(name, value)
        if call.new_session:
            # Lax, not Strict: a link from another site (a wiki, a chat)
            # brings the cookie along, so no new session replaces it and
            # forms open in other tabs keep working.  Cross-site POSTs do not
            # get it, and same-site ones from other ports fail the origin
            # check and the token.
            request.addCookie(
                SESSION_COOKIE, call.session.encode("ascii"),
                path=b"/", httpOnly=True, sameSite="lax",
            )
        request.write(response.body)
        request.finish()

    def _rpc_problem(self, error):
        code, details = error.code(), error.details() or ""
        match = _FIELD.match(details)
        field_name = match.group(1) if match else None
        if code == grpc.StatusCode.ALREADY_EXISTS:
            return Problem(409, "Already taken", details, field_name)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return Problem(400, "Jack did not accept this", details, field_name)
        if code == grpc.StatusCode.NOT_FOUND:
            return Problem(404, "Not found", details, field_name)
        if code == grpc.StatusCode.UNAVAILABLE:
            return Problem(
                503, "Jack is not reachable",
                f"The console cannot reach Jack at {self._address}: is it running? "
                f"({details})",
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return Problem(
                504, "Jack did not answer",
                f"Jack at {self._address} did not answer in time; try again.",
            )
        if code == grpc.StatusCode.INTERNAL:
            return Problem(502, "Jack failed", "Jack hit an internal error; its log has the details.")
        return Problem(502, f"Jack answered {code.name}", details)

    def _problem_page(self, problem):
        return Response(problem.status, pages.problem_page(problem, self._address))

    def _html(self, body):
        return Response(200, body)

    async def _home(self, call):
        return _redirect("/producers")

    async def _stylesheet(self, call):
        return Response(200, CSS.encode("utf-8"), b"text/css; charset=utf-8")

    async def _producers(self, call):
        token = call.arg("page_token")
        producers, next_token = await self._client.list_producers(self._page_size, token)
        return self._html(pages.producers_page(producers, next_token, not token, self._address))

    async def _producer(self, call, producer_id):
        token = call.arg("page_token")
        producer = await self._client.get_producer(producer_id)
        job_types, next_token = await self._client.list_job_types(
            producer_id, self._page_size, token
        )
        # The notices show only with the proof that this browser just
        # created the thing, so that no link can make them up.
        proof, job_type_name = call.arg("created"), call.arg("created_job_type")
        if job_type_name:
            created = False
            if not call.notice_ok(proof, "job-type", producer_id, job_type_name):
                job_type_name = None
        else:
            created = call.notice_ok(proof, "producer", producer_id)
            job_type_name = None
        return self._html(pages.producer_page(
            producer, job_types, next_token, not token, self._address,
            created=created, created_job_type=job_type_name,
        ))

    async def _new_producer(self, call):
        return self._html(pages.new_producer_page(call.token, self._address))

    def _forbidden(self):
        return self._problem_page(Problem(
            403, "Form refused",
            "This form did not come from this console's own page with this "
            "browser's security token (it expired, the console restarted, or "
            "another site sent it). Go back, reload the page and send it again.",
        ))

    async def _create_producer(self, call):
        values = {"name": call.arg("name"), "description": call.arg("description")}
        try:
            producer = await self._client.create_producer(values["name"], values["description"])
        except grpc.aio.AioRpcError as error:
            problem = self._rpc_problem(error)
            return Response(problem.status, pages.new_producer_page(
                call.token, self._address, values, problem
            ))
        proof = call.notice_proof("producer", producer.producer_id)
        return _redirect(pages.producer_url(producer.producer_id, created=proof))

    async def _new_job_type(self, call, producer_id):
        producer = await self._client.get_producer(producer_id)
        return self._html(pages.new_job_type_page(producer, call.token, self._address))

    async def _create_job_type(self, call, producer_id):
        values = {
            name: call.arg(name) for name in ("name", "queue", "max_retries", "description")
        }
        try:
            queue, max_retries = _queue(values["queue"]), _max_retries(values["max_retries"])
            job_type = await self._client.create_job_type(
                producer_id, values["name"], queue, max_retries, values["description"]
            )
        except (grpc.aio.AioRpcError, _FormError) as error:
            if isinstance(error, _FormError):
                problem = error.problem
            else:
                problem = self._rpc_problem(error)
            producer = await self._producer_or_placeholder(producer_id)
            return Response(problem.status, pages.new_job_type_page(
                producer, call.token, self._address, values, problem
            ))
        proof = call.notice_proof("job-type", producer_id, job_type.name)
        return _redirect(
            pages.producer_url(producer_id, created_job_type=job_type.name, created=proof)
        )

    async def _producer_or_placeholder(self, producer_id):
        """The producer, for a form shown again; its bare id when Jack cannot say."""
        try:
            return await self._client.get_producer(producer_id)
        except grpc.aio.AioRpcError:
            return Producer(producer_id=producer_id, name=producer_id)


class _FormError(Exception):
    def __init__(self, problem):
        super().__init__(problem.message)
        self.problem = problem


def _queue(text):
    names = [name for name, _, _ in pages.QUEUES]
    if text not in names:
        raise _FormError(Problem(
            400, "Check the form", "queue: choose one of the four queues", "queue"
        ))
    return Queue.Value(text)


def _max_retries(text):
    text = text.strip()
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,3}", text) or int(text) > 100:
        raise _FormError(Problem(
            400, "Check the form",
            f"max_retries: {text!r} is not a whole number from 0 to 100", "max_retries",
        ))
    return int(text)
