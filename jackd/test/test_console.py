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

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from jack import admin_pb2, admin_pb2_grpc
from jack.job_pb2 import Queue
from jackd.console.tap import SETTINGS, Options, makeService
from jackd.testing.console import ConsoleProcess
from jackd.testing.daemon import JackProcess, free_port, run_twistd

DEFAULTS = {
    "console-port": 8080,
    "console-interface": "127.0.0.1",
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
                "JACK_ADDR": "jack.internal:6000",
                "CONSOLE_PAGE_SIZE": "20",
                "CONSOLE_CALL_TIMEOUT": "2s",
            }),
            {
                "console-port": 9000,
                "console-interface": "::1",
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
            (["--call-timeout", "0s"], {}, "--call-timeout: '0s' must be longer than 0s"),
        ]
        for argv, environ, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(argv, environ)
            self.assertIn(message, str(caught.exception))

    def test_help_lists_every_setting(self):
        """--help names every option with its environment variable and default."""
        text = " ".join(str(Options(environ={})).split())
        for setting in SETTINGS:
            self.assertIn(f"--{setting.option}=", text)
            self.assertIn(f"[env {setting.env}; default: {setting.default}]", text)


class MakeServiceTests(SynchronousTestCase):
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
            f"twistd jack-console: web console (CONSOLE_PORT): cannot listen on "
            f"port {port}: already in use",
        )

    def test_plugin(self):
        """twistd finds the jack-console plugin; its --help lists the settings."""
        result = run_twistd(["jack-console", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("--jack-addr=", result.stdout)
        self.assertIn("JACK_ADDR", result.stdout)


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
            process = ConsoleProcess(jack().address, args=["--page-size", "3"])
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
    (tests look at them).
    """

    def __init__(self, base_url):
        split = urlsplit(base_url)
        self.host, self.port = split.hostname, split.port
        self.cookies = SimpleCookie()

    def request(self, method, path, form=None, cookies=True):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {}
        body = None
        if form is not None:
            body = urlencode(form).encode("utf-8")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if cookies and self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())
        try:
            connection.request(method, path, body=body, headers=headers)
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

    def post(self, path, form, cookies=True):
        return self.request("POST", path, form, cookies)

    def token(self):
        """This browser's CSRF token (it has one after its first GET)."""
        return self.cookies["jack_console_csrf"].value


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
        self.assertEqual(page.header("location"), f"/producers/{producer.producer_id}?created=1")
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
        self.assertEqual(
            page.header("location"),
            f"/producers/{producer.producer_id}?created_job_type=reindex",
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
        """The CSRF cookie is HttpOnly and SameSite=Strict, set once and then kept."""
        first = self.browser.get("/producers")
        [cookie] = first.set_cookies
        self.assertRegex(cookie, r"^jack_console_csrf=[A-Za-z0-9_-]{43}; Path=/; HttpOnly; "
                                 r"SameSite=strict$")
        second = self.browser.get("/producers/new")
        self.assertEqual(second.set_cookies, [])
        self.assertEqual(second.field("csrf_token"), self.browser.token())

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
