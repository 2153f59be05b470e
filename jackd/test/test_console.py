"""
The Jack Console over plain HTTP: ``twistd jack-console`` as a subprocess in
front of a real ``twistd jack``, requests made the way a browser makes them
(cookies, form posts), HTML read back.  The browser tests are in
``test_console_browser``.
"""

import atexit
import http.client
import signal
import socket
import time
import uuid
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

from twisted.internet import task
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jack import admin_pb2, admin_pb2_grpc
from jack.job_pb2 import Queue
from jackd.console.guard import NOTICE_LIFETIME, Guard, host_of
from jackd.console.tap import SETTINGS, Options, makeService
from jackd.testing.console import ConsoleProcess
from jackd.testing.daemon import JackProcess, free_port, run_twistd

DEFAULTS = {
    "console-port": 8080,
    "console-interface": "127.0.0.1",
    "allowed-hosts": (),
    "jack-addr": "localhost:50051",
    "page-size": 50,
    "call-timeout": 10.0,
}


def parse(argv=(), environ=None):
    options = Options(environ=environ or {})
    options.parseOptions(list(argv))
    return dict(options)


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """With no options and an empty environment every setting has its default."""
        self.assertEqual(parse(), DEFAULTS)

    def test_environment(self):
        """Each setting is read from the environment variable of its name."""
        self.assertEqual(
            parse(environ={
                "CONSOLE_PORT": "9000",
                "CONSOLE_INTERFACE": "::1",
                "CONSOLE_ALLOWED_HOSTS": "Jack.Example.com., ops.internal 10.0.0.7,[::2]",
                "JACK_ADDR": "jack.internal:6000",
                "CONSOLE_PAGE_SIZE": "20",
                "CONSOLE_CALL_TIMEOUT": "2s",
            }),
            {
                "console-port": 9000,
                "console-interface": "::1",
                "allowed-hosts": ("jack.example.com", "ops.internal", "10.0.0.7", "::2"),
                "jack-addr": "jack.internal:6000",
                "page-size": 20,
                "call-timeout": 2.0,
            },
        )

    def test_option_beats_environment(self):
        """A command-line option wins over the environment variable."""
        self.assertEqual(
            parse(["--jack-addr", "a:1", "--console-port", "81"],
                  {"JACK_ADDR": "b:2", "CONSOLE_PORT": "82", "CONSOLE_PAGE_SIZE": "7"}),
            dict(DEFAULTS, **{"jack-addr": "a:1", "console-port": 81, "page-size": 7}),
        )

    def test_bad_values(self):
        """A bad value is a usage error naming where it came from."""
        cases = [
            (["--console-port", "web"], {}, "--console-port: 'web' is not a TCP port"),
            ([], {"CONSOLE_INTERFACE": "localhost"},
             "CONSOLE_INTERFACE: 'localhost' is not an IP address"),
            (["--page-size", "0"], {}, "--page-size: '0' is not a whole number from 1 to 1000"),
            ([], {"CONSOLE_PAGE_SIZE": "1001"}, "CONSOLE_PAGE_SIZE: '1001'"),
            (["--jack-addr", " "], {}, "--jack-addr: must name Jack's gRPC address"),
            ([], {"CONSOLE_ALLOWED_HOSTS": "jack.example.com:8080"},
             "CONSOLE_ALLOWED_HOSTS: 'jack.example.com:8080' is not a host name"),
            ([], {"CONSOLE_ALLOWED_HOSTS": "https://jack.example.com"},
             "CONSOLE_ALLOWED_HOSTS: 'https://jack.example.com' is not a host name"),
            (["--call-timeout", "0s"], {}, "--call-timeout: '0s' must be longer than 0s"),
        ]
        for argv, environ, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(argv, environ)
            self.assertIn(message, str(caught.exception))

    def test_jack_addr(self):
        """
        JACK_ADDR is host:port with a port from 1 to 65535, or a target with
        a gRPC scheme; anything else (no port, a URL) is a usage error.
        """
        for good in ["localhost:50051", "jack.internal:1", "10.0.0.7:65535", "[::1]:50051",
                     "dns:///jack.internal:50051", "unix:/run/jack.sock",
                     "ipv4:10.0.0.1:5000,10.0.0.2:5000", "ipv6:[::1]:50051"]:
            self.assertEqual(parse(["--jack-addr", good])["jack-addr"], good)
        for bad in ["127.0.0.1", "127.0.0.1:99999", "127.0.0.1:0", "http://127.0.0.1:50051",
                    "jack.internal:", ":50051", "jack internal:50051", "::1:50051", "dns:",
                    "127.0.0.1:５０"]:
            with self.assertRaises(usage.UsageError) as caught:
                parse(environ={"JACK_ADDR": bad})
            message = str(caught.exception)
            self.assertTrue(message.startswith("JACK_ADDR: "), message)
            self.assertNotIn("\n", message)

    def test_help_lists_every_setting(self):
        """--help names every option with its environment variable and default."""
        text = " ".join(str(Options(environ={})).split())
        for setting in SETTINGS:
            self.assertIn(f"--{setting.option}=", text)
            self.assertIn(f"[env {setting.env}; default: {setting.default or 'unset'}]", text)


class MakeServiceTests(SynchronousTestCase):
    def test_interface_not_here(self):
        """
        A console interface that is not an address of this machine stops the
        start with one line (not a traceback from listenTCP).
        """
        options = Options(environ={})
        options.parseOptions(["--console-port", "0", "--console-interface", "192.0.2.1"])
        from twisted.internet import reactor

        with self.assertRaises(SystemExit) as caught:
            makeService(options, reactor)
        self.assertEqual(
            caught.exception.code,
            "twistd jack-console: web console (CONSOLE_INTERFACE, CONSOLE_PORT): cannot "
            "listen on 192.0.2.1 port 0: not an address of this machine",
        )

    def test_port_in_use(self):
        """A console port something listens on stops the start with one line."""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port = listener.getsockname()[1]
            options = Options(environ={})
            options.parseOptions(["--console-port", str(port)])
            from twisted.internet import reactor

            with self.assertRaises(SystemExit) as caught:
                makeService(options, reactor)
        self.assertEqual(
            caught.exception.code,
            f"twistd jack-console: web console (CONSOLE_INTERFACE, CONSOLE_PORT): cannot "
            f"listen on 127.0.0.1 port {port}: already in use",
        )

    def test_plugin(self):
        """twistd finds the jack-console plugin; its --help lists the settings."""
        result = run_twistd(["jack-console", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--jack-addr=", result.stdout)
        self.assertIn("JACK_ADDR", result.stdout)

    def test_start_error_is_one_line(self):
        """`twistd jack-console` on an address of another machine exits 1 with one line."""
        result = run_twistd(["jack-console", "--console-interface", "192.0.2.1"])
        self.assertEqual(result.returncode, 1)
        self.assertEqual(result.stderr.strip().splitlines(), [(
            "twistd jack-console: web console (CONSOLE_INTERFACE, CONSOLE_PORT): cannot "
            "listen on 192.0.2.1 port 8080: not an address of this machine"
        )])


class GuardTests(SynchronousTestCase):
    """The console's checks of hosts, origins, tokens and notices, without HTTP."""

    def test_host_of(self):
        """host_of takes the host from a Host header: lowercase, no port, brackets or dot."""
        for header, host in [
            (b"Jack.Example.com:8080", "jack.example.com"), (b"localhost.", "localhost"),
            (b"[::1]:8080", "::1"), (b"127.0.0.1", "127.0.0.1"), (b"", None),
            (b"a b", None), (b"jack:port", None), (b"http://jack", None), (b"\xff", None),
        ]:
            self.assertEqual(host_of(header), host, header)

    def test_hosts(self):
        """
        Loopback names and addresses, the interface and the allowed names are
        served; other names are not, nor other addresses unless the console
        listens on every address.
        """
        guard = Guard("10.0.0.5", ("jack.example.com",))
        for host in [b"localhost:8080", b"127.0.0.1", b"127.9.9.9:1", b"[::1]:8080",
                     b"10.0.0.5:8080", b"JACK.example.com:443", None]:
            self.assertTrue(guard.host_allowed(host), host)
        for host in [b"attacker.example", b"10.0.0.6:8080", b"jack.example.com.evil",
                     b"sub.localhost", b"", b"[::2]"]:
            self.assertFalse(guard.host_allowed(host), host)
        everywhere = Guard("0.0.0.0")
        self.assertTrue(everywhere.host_allowed(b"10.0.0.6:8080"))
        self.assertTrue(everywhere.host_allowed(b"[2001:db8::1]:8080"))
        self.assertFalse(everywhere.host_allowed(b"attacker.example:8080"))

    def test_same_origin(self):
        """
        Origin decides when sent, else Referer, else Sec-Fetch-Site
        (same-origin or none); a cross-site or same-site Sec-Fetch-Site always
        refuses; with none of them the POST is refused.
        """
        guard = Guard()
        host = b"127.0.0.1:8080"
        own, other = b"http://127.0.0.1:8080", b"http://127.0.0.1:8999"
        cases = [
            ((own, None, None), True),
            ((b"HTTP://127.0.0.1:8080", None, None), True),
            ((other, own + b"/x", None), False),
            ((b"null", None, None), False),
            ((None, own + b"/producers/new", None), True),
            ((None, other + b"/", None), False),
            ((None, None, b"same-origin"), True),
            ((None, None, b"none"), True),
            ((None, None, b"same-site"), False),
            ((own, None, b"cross-site"), False),
            ((None, None, None), False),
            ((b"\xff", None, None), False),
        ]
        for (origin, referer, site), expected in cases:
            self.assertEqual(
                guard.same_origin(host, origin, referer, site), expected, (origin, referer, site)
            )
        self.assertFalse(guard.same_origin(None, own, None, None))

    def test_tokens(self):
        """
        A session's token is an HMAC under the guard's secret: it checks for
        that session only, and another console (another secret) does not
        take it.
        """
        guard, other = Guard(), Guard()
        session = guard.new_session()
        token = guard.csrf_token(session).encode("ascii")
        self.assertEqual(guard.session_of(session.encode("ascii")), session)
        self.assertTrue(guard.csrf_ok(session, token))
        self.assertFalse(guard.csrf_ok(guard.new_session(), token))
        self.assertFalse(other.csrf_ok(session, token))
        self.assertFalse(guard.csrf_ok(session, session.encode("ascii")))
        self.assertFalse(guard.csrf_ok(session, b""))
        for cookie in (None, b"", b"short", b"A" * 42 + b"!", b"A" * 44):
            self.assertIsNone(guard.session_of(cookie), cookie)

    def test_notices(self):
        """
        A notice proof is good for its session and what it names, until
        NOTICE_LIFETIME seconds have passed.
        """
        clock = task.Clock()
        clock.advance(1_700_000_000)
        guard = Guard(clock=clock.seconds)
        session = guard.new_session()
        proof = guard.notice_proof(session, "job-type", "prod_1", "reindex")
        self.assertTrue(guard.notice_ok(session, proof, "job-type", "prod_1", "reindex"))
        self.assertFalse(guard.notice_ok(session, proof, "job-type", "prod_1", "other"))
        self.assertFalse(guard.notice_ok(session, proof, "producer", "prod_1"))
        self.assertFalse(guard.notice_ok(guard.new_session(), proof, "job-type", "prod_1",
                                         "reindex"))
        self.assertFalse(guard.notice_ok(None, proof, "job-type", "prod_1", "reindex"))
        for bad in ("", "1", "x.y", "9" * 5000 + ".x", "²." + proof.partition(".")[2]):
            self.assertFalse(guard.notice_ok(session, bad, "producer", "prod_1"), bad)
        clock.advance(NOTICE_LIFETIME)
        self.assertTrue(guard.notice_ok(session, proof, "job-type", "prod_1", "reindex"))
        clock.advance(1)
        self.assertFalse(guard.notice_ok(session, proof, "job-type", "prod_1", "reindex"))


_jack = None
_consoles = {}


def jack():
    """The Jack daemon shared by this module's tests, started on first use."""
    global _jack
    if _jack is None:
        process = JackProcess()
        atexit.register(process.stop)
        process.start()
        _jack = process
    return _jack


def console(kind):
    """
    A console shared by this module's tests, started on first use:
    C{"paged"} talks to L{jack} with 3 items a page, C{"down"} to an
    address where nothing listens.
    """
    if kind not in _consoles:
        if kind == "paged":
            process = ConsoleProcess(jack().address, args=[
                "--page-size", "3", "--allowed-hosts", "console.example",
            ])
        else:
            process = ConsoleProcess(f"127.0.0.1:{free_port()}", args=["--call-timeout", "5s"])
        atexit.register(process.stop)
        process.start()
        _consoles[kind] = process
    return _consoles[kind]


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Page:
    """One HTTP answer: status, headers, body text and the links in it."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.text = body.decode("utf-8")
        parser = _Elements()
        parser.feed(self.text)
        self.elements = parser.elements

    def header(self, name):
        return self.headers.get(name.lower())

    def find(self, tag=None, **attributes):
        """Elements (C{(tag, attributes, text)}) with these attribute values."""
        return [
            element for element in self.elements
            if (tag is None or element[0] == tag)
            and all(element[1].get(k.rstrip("_")) == v for k, v in attributes.items())
        ]

    def text_of(self, tag=None, **attributes):
        [element] = self.find(tag, **attributes)
        return element[2]

    def next_url(self):
        links = self.find("a", rel="next")
        return links[0][1]["href"] if links else None

    def field(self, name):
        [element] = self.find("input", name=name)
        return element[1].get("value", "")


class _Elements(HTMLParser):
    """Every element with its attributes and its text (text of nested elements included)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []
        self._open = []

    def handle_starttag(self, tag, attrs):
        element = (tag, dict(attrs), [])
        self.elements.append(element)
        if tag not in ("input", "meta", "link", "br", "img"):
            self._open.append(element)

    def handle_endtag(self, tag):
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data):
        for element in self._open:
            element[2].append(data)

    def close(self):
        super().close()
        self.elements = [(tag, attrs, "".join(text)) for tag, attrs, text in self.elements]

    def feed(self, data):
        super().feed(data)
        self.close()


class Browser:
    """
    HTTP the way a browser does it: keeps cookies, follows no redirects
    (tests look at them), sends its page's C{Origin} with a form.
    """

    def __init__(self, base_url):
        split = urlsplit(base_url)
        self.host, self.port = split.hostname, split.port
        self.origin = f"{split.scheme}://{split.netloc}"
        self.cookies = SimpleCookie()

    def request(self, method, path, form=None, cookies=True, headers=None):
        """
        @param headers: headers to add, or to leave out (a value of C{None}).
        """
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        sent = {}
        body = None
        if form is not None:
            body = urlencode(form).encode("utf-8")
            sent["Content-Type"] = "application/x-www-form-urlencoded"
            sent["Origin"] = self.origin
        if cookies and self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())
        sent.update(headers or {})
        sent = {name: value for name, value in sent.items() if value is not None}
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            page = Page(
                response.status,
                {k.lower(): v for k, v in response.getheaders()},
                response.read(),
            )
            for value in response.headers.get_all("Set-Cookie") or []:
                self.cookies.load(value)
            page.set_cookies = response.headers.get_all("Set-Cookie") or []
            return page
        finally:
            connection.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, form, cookies=True, headers=None):
        return self.request("POST", path, form, cookies, headers)

    def session(self):
        """This browser's session cookie (it has one after its first GET)."""
        return self.cookies["jack_console_csrf"].value

    def token(self):
        """The CSRF token of this browser's forms (from a form page)."""
        return self.get("/producers/new").field("csrf_token")


def admin():
    return admin_pb2_grpc.AdminServiceStub(jack().channel())


def create_producer(name, description=""):
    return admin().CreateProducer(
        admin_pb2.CreateProducerRequest(name=name, description=description)
    ).producer


def all_producers():
    producers, token = [], ""
    while True:
        response = admin().ListProducers(
            admin_pb2.ListProducersRequest(page_size=1000, page_token=token)
        )
        producers.extend(response.producers)
        token = response.next_page_token
        if not token:
            return producers


class ConsoleTests(TestCase):
    """The console in front of a running Jack, 3 items a page."""

    def setUp(self):
        self.console = console("paged")
        self.browser = Browser(self.console.url)

    def create_form(self, path, **fields):
        """GET the form at C{path} (for the cookie), then POST C{fields} with its token."""
        form_page = self.browser.get(path)
        self.assertEqual(form_page.status, 200, form_page.text)
        fields["csrf_token"] = form_page.field("csrf_token")
        return self.browser.post(form_page.find("form")[0][1]["action"], fields)

    def walk(self, path):
        """Every page of a paged list from C{path}, following "Next page"."""
        pages = []
        while path is not None:
            page = self.browser.get(path)
            self.assertEqual(page.status, 200, page.text)
            pages.append(page)
            path = page.next_url()
            self.assertLess(len(pages), 1000, "next-page links loop")
        return pages

    def test_home_redirects(self):
        """/ sends the browser to the producers."""
        page = self.browser.get("/")
        self.assertEqual((page.status, page.header("location")), (303, "/producers"))

    def test_create_producer(self):
        """
        Posting the form creates the producer in Jack and redirects to its
        page, which shows the new id prominently.
        """
        name = unique("Billing")
        page = self.create_form("/producers/new", name=name, description="invoices")
        self.assertEqual(page.status, 303, page.text)
        [producer] = [p for p in all_producers() if p.name == name]
        self.assertRegex(
            page.header("location"),
            rf"^/producers/{producer.producer_id}\?created=[0-9]+\.[A-Za-z0-9_-]{{43}}$",
        )
        shown = self.browser.get(page.header("location"))
        self.assertEqual(shown.status, 200)
        self.assertEqual(shown.text_of(id="new-id"), producer.producer_id)
        self.assertIn("Producer created", shown.text_of(id="created"))
        self.assertEqual(shown.text_of("h1"), name)

    def test_create_job_type(self):
        """
        Posting the job type form creates it with the queue, max retries and
        description chosen; the producer's page lists it with its SLA.
        """
        producer = create_producer(unique("Search"))
        page = self.create_form(
            f"/producers/{producer.producer_id}/job-types/new",
            name="reindex", queue="QUEUE_HIGH", max_retries="7", description="nightly",
        )
        self.assertEqual(page.status, 303, page.text)
        self.assertRegex(
            page.header("location"),
            rf"^/producers/{producer.producer_id}\?created_job_type=reindex"
            rf"&created=[0-9]+\.[A-Za-z0-9_-]{{43}}$",
        )
        [job_type] = admin().ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer.producer_id)
        ).job_types
        self.assertEqual(
            (job_type.name, job_type.queue, job_type.max_retries, job_type.description),
            ("reindex", Queue.QUEUE_HIGH, 7, "nightly"),
        )
        shown = self.browser.get(page.header("location"))
        self.assertEqual(shown.text_of(id="new-id"), "reindex")
        self.assertEqual(
            [cell[2] for cell in shown.find("td")][:4], ["reindex", "High", "15 s", "7"]
        )

    def test_job_type_form_shows_queues_with_sla(self):
        """The job type form offers the four queues, each with its SLA; medium is preselected."""
        producer = create_producer(unique("Queues"))
        page = self.browser.get(f"/producers/{producer.producer_id}/job-types/new")
        labels = [" ".join(text.split()) for _, _, text in page.find("label", class_="choice")]
        self.assertEqual(labels, [
            "Immediate picked up within 5 s", "High picked up within 15 s",
            "Medium picked up within 1 min", "Low picked up within 5 min",
        ])
        [checked] = [attrs["value"] for _, attrs, _ in page.find("input", type="radio")
                     if "checked" in attrs]
        self.assertEqual(checked, "QUEUE_MEDIUM")

    def test_default_max_retries(self):
        """An empty max retries leaves Jack's default (3)."""
        producer = create_producer(unique("Defaults"))
        page = self.create_form(
            f"/producers/{producer.producer_id}/job-types/new",
            name="t", queue="QUEUE_LOW", max_retries="",
        )
        self.assertEqual(page.status, 303, page.text)
        [job_type] = admin().ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer.producer_id)
        ).job_types
        self.assertEqual((job_type.queue, job_type.max_retries), (Queue.QUEUE_LOW, 3))

    def test_producers_paged(self):
        """Following "Next page" from /producers shows every producer once, in name order."""
        for _ in range(7):
            create_producer(unique("Paged"))
        pages = self.walk("/producers")
        shown = [
            attrs["href"].rsplit("/", 1)[1]
            for page in pages
            for _, attrs, _ in page.find("a")
            if attrs.get("href", "").startswith("/producers/prod_")
        ]
        expected = all_producers()
        self.assertEqual(shown, [p.producer_id for p in expected])
        self.assertEqual(len(pages), -(-len(expected) // 3))
        self.assertTrue(all(len(page.find("tr")) <= 4 for page in pages))

    def test_job_types_paged(self):
        """A producer's page pages its job types the same way."""
        producer = create_producer(unique("Many"))
        names = [f"type-{i}" for i in range(7)]
        for name in names:
            admin().CreateJobType(admin_pb2.CreateJobTypeRequest(
                producer_id=producer.producer_id, name=name
            ))
        pages = self.walk(f"/producers/{producer.producer_id}")
        self.assertEqual(len(pages), 3)
        shown = [cell[2] for page in pages for cell in page.find("td", **{"data-label": "Name"})]
        self.assertEqual(shown, names)
        for page in pages:
            self.assertEqual(page.text_of("h1"), producer.name)

    def test_pages_have_no_script_and_fit_phones(self):
        """
        Every page is plain HTML: no script element, a viewport meta tag,
        one stylesheet, and a CSP that forbids scripts.
        """
        producer = create_producer(unique("Plain"))
        for path in ["/producers", "/producers/new", f"/producers/{producer.producer_id}",
                     f"/producers/{producer.producer_id}/job-types/new"]:
            page = self.browser.get(path)
            self.assertEqual(page.status, 200, path)
            self.assertEqual(page.find("script"), [], path)
            self.assertEqual(
                page.find("meta", name="viewport")[0][1]["content"],
                "width=device-width, initial-scale=1",
            )
            self.assertEqual(page.header("content-type"), "text/html; charset=utf-8")
            self.assertIn("default-src 'none'", page.header("content-security-policy"))
            self.assertEqual(page.header("x-frame-options"), "DENY")
        css = self.browser.get("/static/console.css")
        self.assertEqual(css.header("content-type"), "text/css; charset=utf-8")
        self.assertIn("@media (max-width: 640px)", css.text)

    def test_csrf_cookie(self):
        """
        The session cookie is HttpOnly and SameSite=Lax (so that following a
        link from another site keeps it), set once and then kept; the forms'
        token is made from it and is not the cookie itself.
        """
        first = self.browser.get("/producers")
        [cookie] = first.set_cookies
        self.assertRegex(cookie, r"^jack_console_csrf=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; "
                                 r"SameSite=lax$")
        second = self.browser.get("/producers/new")
        self.assertEqual(second.set_cookies, [])
        token = second.field("csrf_token")
        self.assertRegex(token, r"^[A-Za-z0-9_-]{43}$")
        self.assertNotEqual(token, self.browser.session())
        self.assertEqual(self.browser.token(), token)

    def test_csrf_refusals(self):
        """
        A POST without the token, with a wrong one, or without the cookie is
        refused with 403 and creates nothing; another browser's token does
        not work either.
        """
        producer = create_producer(unique("Guarded"))
        self.browser.get("/producers/new")
        token = self.browser.token()
        other = Browser(self.console.url)
        other.get("/producers")
        name = unique("Forged")
        attempts = [
            ("/producers", {"name": name}, True),
            ("/producers", {"name": name, "csrf_token": ""}, True),
            ("/producers", {"name": name, "csrf_token": "x" * 43}, True),
            ("/producers", {"name": name, "csrf_token": token[:-1]}, True),
            ("/producers", {"name": name, "csrf_token": token}, False),
            ("/producers", {"name": name, "csrf_token": other.token()}, True),
            (f"/producers/{producer.producer_id}/job-types",
             {"name": "forged", "queue": "QUEUE_LOW", "csrf_token": "nope"}, True),
        ]
        for path, form, with_cookie in attempts:
            page = self.browser.post(path, form, cookies=with_cookie)
            self.assertEqual(page.status, 403, (path, form, with_cookie))
            self.assertIn("Form refused", page.text_of("h1"))
        self.assertNotIn(name, [p.name for p in all_producers()])
        self.assertEqual(len(admin().ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=producer.producer_id)
        ).job_types), 0)
        # The cookieless posts got a new cookie: with its token, the same
        # post goes through.
        token = self.browser.get("/producers/new").field("csrf_token")
        self.assertEqual(token, self.browser.token())
        page = self.browser.post("/producers", {"name": name, "csrf_token": token})
        self.assertEqual(page.status, 303, page.text)

    def test_planted_cookie(self):
        """
        A session cookie that another page planted (cookies ignore ports: any
        page on this host can set one) with a token it made up is refused,
        even with this console's Origin: the token must be the console's HMAC
        of the session.
        """
        name = unique("Planted")
        planted = "A" * 43
        self.browser.cookies["jack_console_csrf"] = planted
        for token in (planted, "B" * 43, ""):
            page = self.browser.post("/producers", {"name": name, "csrf_token": token})
            self.assertEqual(page.status, 403, token)
            self.assertIn("Form refused", page.text_of("h1"))
        self.assertNotIn(name, [p.name for p in all_producers()])
        # The console's own form for that session works.
        self.assertEqual(self.browser.session(), planted)
        page = self.browser.post("/producers", {"name": name, "csrf_token": self.browser.token()})
        self.assertEqual(page.status, 303, page.text)

    def test_cross_origin_posts(self):
        """
        A POST is refused (403, nothing created) unless its Origin, or
        without one its Referer, is the console's own, or else Sec-Fetch-Site
        says same-origin or none: a page on another port of the same host, or
        any other site, cannot send the console's forms even with a good
        cookie and token.
        """
        token = self.browser.token()
        own = self.browser.origin
        other_port = f"http://127.0.0.1:{self.browser.port + 1}"
        cases = [
            ({"Origin": other_port}, 403),
            ({"Origin": "http://localhost:" + str(self.browser.port)}, 403),
            ({"Origin": "null"}, 403),
            ({"Origin": own, "Sec-Fetch-Site": "same-site"}, 403),
            ({"Origin": own, "Sec-Fetch-Site": "cross-site"}, 403),
            ({"Origin": None}, 403),
            ({"Origin": None, "Referer": other_port + "/producers/new"}, 403),
            ({"Origin": None, "Sec-Fetch-Site": "cross-site"}, 403),
            ({"Origin": own, "Sec-Fetch-Site": "same-origin"}, 303),
            ({"Origin": None, "Referer": own + "/producers/new"}, 303),
            ({"Origin": None, "Sec-Fetch-Site": "same-origin"}, 303),
            ({"Origin": None, "Sec-Fetch-Site": "none"}, 303),
        ]
        for headers, status in cases:
            name = unique("Origin")
            page = self.browser.post(
                "/producers", {"name": name, "csrf_token": token}, headers=headers
            )
            self.assertEqual(page.status, status, (headers, page.text))
            created = name in [p.name for p in all_producers()]
            self.assertEqual(created, status == 303, headers)

    def test_unknown_host(self):
        """
        A request whose Host is not a name of this console (DNS rebinding:
        attacker.example pointed at 127.0.0.1) gets a 400 that names neither
        Jack nor a cookie, and a POST creates nothing; loopback names and
        addresses and CONSOLE_ALLOWED_HOSTS are served.
        """
        port = self.browser.port
        for host in ["attacker.example", f"attacker.example:{port}", "127.0.0.1.nip.io",
                     "localhost.attacker.example", "10.0.0.7", "", "bad host"]:
            page = self.browser.request(
                "GET", "/producers/new", headers={"Host": host}, cookies=False
            )
            self.assertEqual(page.status, 400, host)
            self.assertEqual(page.set_cookies, [], host)
            self.assertNotIn(jack().address, page.text)
            self.assertNotIn("csrf_token", page.text)
        name = unique("Rebound")
        page = self.browser.post(
            "/producers", {"name": name, "csrf_token": self.browser.token()},
            headers={"Host": f"attacker.example:{port}",
                     "Origin": f"http://attacker.example:{port}"},
        )
        self.assertEqual(page.status, 400)
        self.assertNotIn(name, [p.name for p in all_producers()])
        for host in [f"localhost:{port}", f"127.0.0.1:{port}", f"127.0.0.2:{port}",
                     f"[::1]:{port}", "LOCALHOST.", f"console.example:{port}",
                     "Console.Example"]:
            page = self.browser.request("GET", "/producers/new", headers={"Host": host})
            self.assertEqual(page.status, 200, host)

    def test_notice_needs_proof(self):
        """
        The "created" notices show only with the proof the console gave this
        browser when it created the thing: a link cannot make a page announce
        a job type that was never created, or a producer as just created.
        """
        producer = create_producer(unique("Spoofed"))
        url = f"/producers/{producer.producer_id}"
        for query in ["created=1", "created_job_type=billing.v2",
                      "created_job_type=billing.v2&created=1",
                      "created_job_type=billing.v2&created=99999999999.x"]:
            page = self.browser.get(f"{url}?{query}")
            self.assertEqual(page.status, 200, query)
            self.assertEqual(page.find(id="created"), [], query)
            self.assertNotIn("billing.v2", page.text)
        # A real proof works for its own browser, and only for what it names.
        created = self.create_form(f"{url}/job-types/new", name="real", queue="QUEUE_LOW")
        location = created.header("location")
        self.assertIn("Job type created", self.browser.get(location).text_of(id="created"))
        forged = location.replace("created_job_type=real", "created_job_type=billing.v2")
        self.assertEqual(self.browser.get(forged).find(id="created"), [])
        other = Browser(self.console.url)
        self.assertEqual(other.get(location).find(id="created"), [])

    def test_body_limit(self):
        """
        A request body over 64 KiB is answered 413 before it is read: by its
        Content-Length, or as its chunks arrive; nothing is created.
        """
        token = self.browser.token()
        cookie = f"jack_console_csrf={self.browser.session()}"
        name = unique("Huge")
        with socket.create_connection((self.browser.host, self.browser.port), 30) as sock:
            sock.sendall(
                b"POST /producers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 150000000\r\n\r\nname=x"
            )
            answer = _read_all(sock)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        self.assertIn(b"at most 65536 bytes", answer)
        form = urlencode({"name": name, "csrf_token": token, "description": "x" * 70000})
        body = form.encode("ascii")
        chunked = b"".join(
            b"%x\r\n%s\r\n" % (len(part), part)
            for part in (body[i:i + 4096] for i in range(0, len(body), 4096))
        ) + b"0\r\n\r\n"
        with socket.create_connection((self.browser.host, self.browser.port), 30) as sock:
            sock.sendall(
                b"POST /producers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Origin: " + self.browser.origin.encode() + b"\r\n"
                b"Cookie: " + cookie.encode() + b"\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + chunked
            )
            answer = _read_all(sock)
        self.assertTrue(answer.startswith(b"HTTP/1.1 413 "), answer[:200])
        self.assertNotIn(name, [p.name for p in all_producers()])
        # Just under the limit is read: Jack refuses the description itself.
        page = self.browser.post("/producers", {
            "name": name, "csrf_token": token, "description": "x" * 60000,
        })
        self.assertEqual(page.status, 400, page.text)
        self.assertIn("description", page.text_of(id="form-error"))

    def test_escaping(self):
        """
        Names and descriptions are shown as text: markup in them never
        becomes markup in the page, in text or in attribute values.
        """
        evil = '<script>alert("x")</script>'
        evil_description = '"><img src=x onerror=alert(1)>'
        producer = create_producer(f"{evil} {uuid.uuid4().hex[:6]}", evil_description)
        page = self.browser.get(f"/producers/{producer.producer_id}")
        self.assertEqual(page.text_of("h1"), producer.name)
        self.assertEqual(page.find("script") + page.find("img"), [])
        self.assertIn('&lt;script&gt;alert("x")&lt;/script&gt;', page.text)
        self.assertNotIn(evil, page.text)
        self.assertNotIn(evil_description, page.text)
        listed = [p for p in self.walk("/producers") if producer.producer_id in p.text]
        self.assertEqual(len(listed), 1)
        self.assertEqual(listed[0].find("script") + listed[0].find("img"), [])
        # A value sent back into a form field stays inside its attribute.
        form = self.create_form(
            f"/producers/{producer.producer_id}/job-types/new",
            name=evil_description, queue="QUEUE_LOW",
        )
        self.assertEqual(form.status, 400, form.text)
        self.assertEqual(form.field("name"), evil_description)
        self.assertEqual(form.find("img"), [])
        self.assertIn("Jack did not accept this", form.text_of(id="form-error"))

    def test_duplicate_name(self):
        """A taken producer name shows Jack's ALREADY_EXISTS message on the form, 409."""
        name = unique("Twice")
        create_producer(name)
        page = self.create_form("/producers/new", name=name, description="again")
        self.assertEqual(page.status, 409)
        error = " ".join(page.text_of(id="form-error").split())
        self.assertIn("Already taken", error)
        self.assertIn(name, error)
        self.assertEqual(page.field("name"), name)
        self.assertEqual(page.text_of("textarea"), "again")
        self.assertEqual(page.find("input", name="name")[0][1].get("aria-invalid"), "true")
        self.assertNotIn("Traceback", page.text)

    def test_duplicate_job_type(self):
        """A job type name taken within the producer is ALREADY_EXISTS on the form."""
        producer = create_producer(unique("Dup"))
        admin().CreateJobType(admin_pb2.CreateJobTypeRequest(
            producer_id=producer.producer_id, name="once"
        ))
        page = self.create_form(
            f"/producers/{producer.producer_id}/job-types/new", name="once", queue="QUEUE_HIGH",
        )
        self.assertEqual(page.status, 409)
        self.assertIn("Already taken", page.text_of(id="form-error"))
        [checked] = [a["value"] for _, a, _ in page.find("input", type="radio") if "checked" in a]
        self.assertEqual(checked, "QUEUE_HIGH")

    def test_bad_names(self):
        """Names Jack refuses show its INVALID_ARGUMENT message naming the field, 400."""
        page = self.create_form("/producers/new", name="   ")
        self.assertEqual(page.status, 400)
        self.assertIn("name:", page.text_of(id="form-error"))
        producer = create_producer(unique("Strict"))
        page = self.create_form(
            f"/producers/{producer.producer_id}/job-types/new", name="no spaces please",
            queue="QUEUE_LOW",
        )
        self.assertEqual(page.status, 400)
        self.assertIn("Jack did not accept this", page.text_of(id="form-error"))
        self.assertIn("name:", page.text_of(id="form-error"))
        self.assertEqual(page.text_of("h1"), "New job type")

    def test_bad_form_values(self):
        """Max retries that is not 0-100 and an unknown queue are refused on the form."""
        producer = create_producer(unique("Form"))
        cases = [
            ({"max_retries": "lots", "queue": "QUEUE_LOW"}, "max_retries: 'lots'"),
            ({"max_retries": "101", "queue": "QUEUE_LOW"}, "max_retries: '101'"),
            ({"max_retries": "99999999999", "queue": "QUEUE_LOW"}, "max_retries"),
            ({"queue": "QUEUE_SOMETIME"}, "queue: choose one of the four queues"),
        ]
        for fields, message in cases:
            page = self.create_form(
                f"/producers/{producer.producer_id}/job-types/new", name="ok", **fields
            )
            self.assertEqual(page.status, 400, fields)
            self.assertIn(message, page.text_of(id="form-error"))

    def test_unknown_producer(self):
        """An unknown producer id is a readable 404 page."""
        page = self.browser.get("/producers/prod_doesnotexist0000000000")
        self.assertEqual(page.status, 404)
        self.assertEqual(page.text_of("h1"), "Not found")
        self.assertIn("producer_id", page.text_of(id="page-error"))

    def test_bad_page_token(self):
        """A page token Jack does not accept is a readable 400 page."""
        page = self.browser.get("/producers?page_token=garbage!")
        self.assertEqual(page.status, 400)
        self.assertIn("page_token", page.text_of(id="page-error"))

    def test_not_found_and_wrong_method(self):
        """An unknown path is 404 and a wrong method 405 with Allow, both as pages."""
        self.assertEqual(self.browser.get("/nope").status, 404)
        page = self.browser.request("DELETE", "/producers")
        self.assertEqual((page.status, page.header("allow")), (405, "GET, POST"))


def _read_all(sock):
    """Everything C{sock} receives until the other side closes it."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class DaemonDownTests(TestCase):
    """A console whose Jack is not running says so, on pages and on forms."""

    def setUp(self):
        self.console = console("down")
        self.browser = Browser(self.console.url)

    def test_page(self):
        """The producers page is a 503 naming Jack's address."""
        page = self.browser.get("/producers")
        self.assertEqual(page.status, 503)
        self.assertEqual(page.text_of("h1"), "Jack is not reachable")
        self.assertIn(self.console.jack_address, page.text_of(id="page-error"))
        self.assertNotIn("Traceback", page.text)

    def test_form(self):
        """Creating a producer shows the form again, filled in, with the reason."""
        form = self.browser.get("/producers/new")
        self.assertEqual(form.status, 200)
        page = self.browser.post("/producers", {
            "name": "Billing", "description": "d", "csrf_token": form.field("csrf_token"),
        })
        self.assertEqual(page.status, 503)
        self.assertIn("Jack is not reachable", page.text_of(id="form-error"))
        self.assertEqual(page.field("name"), "Billing")

    def test_job_type_form(self):
        """Creating a job type while Jack is down shows its form with the reason."""
        self.browser.get("/producers")
        page = self.browser.post("/producers/prod_x/job-types", {
            "name": "t", "queue": "QUEUE_LOW", "csrf_token": self.browser.token(),
        })
        self.assertEqual(page.status, 503)
        self.assertIn("Jack is not reachable", page.text_of(id="form-error"))
        self.assertEqual(page.text_of("h1"), "New job type")


class RecoveryTests(TestCase):
    def test_jack_comes_back(self):
        """
        Once Jack answers again, the console's pages work again without a
        restart; SIGTERM stops the console cleanly.
        """
        port = free_port()
        console = ConsoleProcess(f"127.0.0.1:{port}")
        console.start()
        self.addCleanup(console.stop)
        browser = Browser(console.url)
        for _ in range(3):  # let the channel back off a few times
            self.assertEqual(browser.get("/producers").status, 503)
            time.sleep(1)
        jack = JackProcess(port=port)
        jack.start()
        self.addCleanup(jack.stop)
        deadline = time.monotonic() + 30
        while browser.get("/producers").status != 200:
            self.assertLess(time.monotonic(), deadline, "the console did not reconnect")
            time.sleep(0.2)
        # SIGTERM stops it cleanly.
        self.assertEqual(console.stop(), -signal.SIGTERM)
        self.assertIn("Jack Console stopped", console.log())
        self.assertNotIn("Traceback", console.log())
