"""
The Jack Console in a real headless browser (Debian's chromium through
Selenium and chromedriver), in front of a real ``twistd jack``: an operator
creates a producer and a job type through the forms and sees them listed.
Every page is saved as a screenshot under ``_trial_temp/screenshots/``, at
laptop size and as a phone shows it.
"""

import atexit
import re
import time
import uuid

from twisted.trial.unittest import TestCase

from jack import admin_pb2, admin_pb2_grpc
from jack.job_pb2 import Queue
from jackd.testing.browser import (
    BrowserMissing,
    Page,
    emulate_desktop,
    emulate_phone,
    save_screenshot,
    start_browser,
)
from jackd.testing.console import ConsoleProcess
from jackd.testing.daemon import JackProcess, free_port
from jackd.testing.services import missing

_shared = {}


def _start(key, make):
    if key not in _shared:
        thing = make()
        _shared[key] = thing
    return _shared[key]


def browser(test):
    """The browser shared by this module's tests (or skip/fail without chromium)."""
    if "browser-missing" in _shared:
        missing(test, _shared["browser-missing"])
    if "browser" not in _shared:
        try:
            driver = start_browser()
        except BrowserMissing as error:
            _shared["browser-missing"] = f"no headless browser: {error}"
            missing(test, _shared["browser-missing"])
        atexit.register(driver.quit)
        _shared["browser"] = driver
    return _shared["browser"]


def jack():
    def make():
        process = JackProcess()
        atexit.register(process.stop)
        process.start()
        return process

    return _start("jack", make)


def console(down=False):
    """The console in front of L{jack}, or (C{down}) of an address where nothing listens."""
    def make():
        address = f"127.0.0.1:{free_port()}" if down else jack().address
        process = ConsoleProcess(address)
        atexit.register(process.stop)
        process.start()
        return process

    return _start("console-down" if down else "console", make)


def unique(prefix):
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def click_and_wait(driver, element, timeout=30):
    """Click C{element} and wait until the browser has left its page."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        WebDriverException,
    )
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element("css selector", "html")
    element.click()

    def left(_):
        try:
            page.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            # Asked in the middle of the navigation, chromium answers that
            # the node no longer belongs to the document instead of "stale"
            # (seen once in CI): the page was left all the same.
            if "does not belong to the document" in str(error):
                return True
            raise
        return False

    WebDriverWait(driver, timeout).until(left)


class ConsoleBrowserTests(TestCase):
    def setUp(self):
        self.browser = browser(self)
        emulate_desktop(self.browser)
        self.console = console()
        self.admin = admin_pb2_grpc.AdminServiceStub(jack().channel())

    def open(self, path, console_process=None):
        self.browser.get((console_process or self.console).url.rstrip("/") + path)

    def css(self, selector):
        return self.browser.find_element("css selector", selector)

    def css_all(self, selector):
        return self.browser.find_elements("css selector", selector)

    def fill(self, field_id, text):
        field = self.css(f"#{field_id}")
        field.clear()
        field.send_keys(text)

    def submit(self):
        """Send the form and wait for the page it leads to (click may return before)."""
        click_and_wait(self.browser, self.css("form button[type=submit]"))

    def test_create_producer_and_job_type(self):
        """
        Through the forms: a new producer's id is shown prominently and it is
        listed; a new job type is listed with its queue and SLA.
        """
        name = unique("Billing")
        self.open("/producers")
        save_screenshot(self.browser, "producers")
        click_and_wait(self.browser, self.browser.find_element("link text", "New producer"))
        self.assertEqual(self.css("h1").text, "New producer")
        self.fill("name", name)
        self.fill("description", "Invoices, payment reminders and refunds")
        save_screenshot(self.browser, "new-producer")
        self.submit()

        new_id = self.css("#new-id").text
        producer = self.admin.GetProducer(
            admin_pb2.GetProducerRequest(producer_id=new_id)
        ).producer
        self.assertEqual(producer.name, name)
        self.assertIn("Producer created", self.css("#created").text)
        self.assertRegex(self.browser.current_url, rf"/producers/{new_id}\?created=[0-9]+\.")
        save_screenshot(self.browser, "producer-created")

        click_and_wait(self.browser, self.browser.find_element("link text", "Producers"))
        listed = {link.text for link in self.css_all("#producers td.name a")}
        self.assertIn(name, listed)
        save_screenshot(self.browser, "producers-listed")

        click_and_wait(self.browser, self.browser.find_element("link text", name))
        click_and_wait(self.browser, self.browser.find_element("link text", "New job type"))
        self.fill("name", "send-invoice")
        self.css("label[for=queue-QUEUE_HIGH]").click()
        self.fill("max_retries", "5")
        self.fill("description", "Render and email one invoice")
        save_screenshot(self.browser, "new-job-type")
        self.submit()

        self.assertEqual(self.css("#new-id").text, "send-invoice")
        [row] = self.css_all("#job-types tbody tr")
        cells = [cell.text for cell in row.find_elements("css selector", "td")]
        self.assertEqual(cells[:4], ["send-invoice", "High", "15 s", "5"])
        save_screenshot(self.browser, "job-type-created")
        [job_type] = self.admin.ListJobTypes(
            admin_pb2.ListJobTypesRequest(producer_id=new_id)
        ).job_types
        self.assertEqual((job_type.queue, job_type.max_retries), (Queue.QUEUE_HIGH, 5))

    def test_errors_on_forms(self):
        """A taken name and a bad name show Jack's reason above the form, which stays filled."""
        name = unique("Taken")
        self.admin.CreateProducer(admin_pb2.CreateProducerRequest(name=name))
        self.open("/producers/new")
        self.fill("name", name)
        self.submit()
        error = self.css("#form-error").text
        self.assertIn("Already taken", error)
        self.assertIn(name, error)
        self.assertEqual(self.css("#name").get_attribute("value"), name)
        save_screenshot(self.browser, "error-duplicate-name")

        self.fill("name", "   ")
        self.submit()
        self.assertIn("Jack did not accept this", self.css("#form-error").text)
        self.assertIn("name:", self.css("#form-error").text)
        save_screenshot(self.browser, "error-bad-name")

    def test_daemon_down(self):
        """With Jack down, a page and a form say that Jack is not reachable."""
        down = console(down=True)
        self.open("/producers", down)
        self.assertEqual(self.css("h1").text, "Jack is not reachable")
        save_screenshot(self.browser, "error-daemon-down")
        self.open("/producers/new", down)
        self.fill("name", "Billing")
        self.submit()
        self.assertIn("Jack is not reachable", self.css("#form-error").text)
        save_screenshot(self.browser, "error-daemon-down-form")

    def test_markup_in_names_is_text(self):
        """A producer named like a script shows as that text and runs nothing."""
        name = f"<script>window.jackPwned = 1</script><b>bold</b> {uuid.uuid4().hex[:6]}"
        producer = self.admin.CreateProducer(
            admin_pb2.CreateProducerRequest(name=name, description="<i>not italic</i>")
        ).producer
        self.open(f"/producers/{producer.producer_id}")
        self.assertEqual(self.css("h1").text, name)
        self.assertEqual(self.css_all("main b, main i, main script"), [])
        self.assertIsNone(self.browser.execute_script("return window.jackPwned"))
        self.open("/producers")
        self.assertIn(name, [link.text for link in self.css_all("#producers td.name a")])
        self.assertIsNone(self.browser.execute_script("return window.jackPwned"))
        save_screenshot(self.browser, "escaping")

    def test_phone_layout(self):
        """
        On a phone-sized screen every page is laid out at the phone's width
        (the viewport meta tag works) and nothing scrolls sideways.
        """
        self.open("/producers/new")
        self.fill("name", unique("Phone"))
        self.fill("description", "A producer with a description long enough to wrap on "
                  "a narrow screen, and a long id next to it")
        self.submit()
        created_url = self.browser.current_url  # with the "created" notice
        producer = self.admin.GetProducer(
            admin_pb2.GetProducerRequest(producer_id=self.css("#new-id").text)
        ).producer
        for queue in ("QUEUE_IMMEDIATE", "QUEUE_LOW"):
            self.admin.CreateJobType(admin_pb2.CreateJobTypeRequest(
                producer_id=producer.producer_id, name=f"job-{queue.lower()}",
                queue=Queue.Value(queue), description="what it does",
            ))
        pages = {
            "producers": "/producers",
            "producer": created_url.split(self.console.url.rstrip("/"), 1)[1],
            "new-producer": "/producers/new",
            "new-job-type": f"/producers/{producer.producer_id}/job-types/new",
        }
        emulate_phone(self.browser, width=390)
        for name, path in pages.items():
            self.open(path)
            width, scroll_width = self.browser.execute_script(
                "return [document.documentElement.clientWidth,"
                " document.documentElement.scrollWidth]"
            )
            self.assertEqual(width, 390, name)
            self.assertLessEqual(scroll_width, 390, name)
            save_screenshot(self.browser, f"{name}-phone")
        # On a phone the job types are cards: each cell says what it is.
        self.open(pages["producer"])
        self.assertTrue(self.css_all("#created"), "the notice is laid out too")
        label = self.browser.execute_script(
            "return getComputedStyle(document.querySelector('#job-types td'),"
            " '::before').content"
        )
        self.assertEqual(label, '"Name"')


class OtherOriginsTests(TestCase):
    """What pages of other origins can make the operator's browser do to the console."""

    def setUp(self):
        self.browser = browser(self)
        emulate_desktop(self.browser)
        self.console = console()
        self.admin = admin_pb2_grpc.AdminServiceStub(jack().channel())

    def css(self, selector):
        return self.browser.find_element("css selector", selector)

    def wait_for_title(self, pattern):
        deadline = time.monotonic() + 30
        while not re.search(pattern, self.browser.title):
            self.assertLess(time.monotonic(), deadline, f"title is {self.browser.title!r}")
            time.sleep(0.05)

    def producer_names(self):
        response = self.admin.ListProducers(admin_pb2.ListProducersRequest(page_size=1000))
        return [producer.name for producer in response.producers]

    def test_page_on_another_port(self):
        """
        A page on another port of the console's host (another local web app
        showing someone else's HTML) plants its own session cookie (cookies
        ignore ports) and sends a console form with a matching made-up
        token: the console refuses it (403) and creates nothing.
        """
        self.browser.get(self.console.url + "producers/new")  # a real session first
        name = unique("Forged")
        planted = "A" * 43
        page = Page(
            f'<form method=post action="{self.console.url}producers">'
            f'<input name=csrf_token value="{planted}"><input name=name value="{name}">'
            f'<button id=send type=submit>Send</button></form>',
            headers=[("Set-Cookie", f"jack_console_csrf={planted}; Path=/")],
        )
        self.addCleanup(page.stop)
        self.browser.get(page.url("127.0.0.1"))
        click_and_wait(self.browser, self.css("#send"))
        self.wait_for_title("Form refused")
        save_screenshot(self.browser, "refused-other-port")
        # The planted cookie did reach the console; the form still failed.
        self.assertEqual(self.browser.get_cookie("jack_console_csrf")["value"], planted)
        self.assertNotIn(name, self.producer_names())

    def test_link_from_another_site(self):
        """
        Following a link to the console from another site keeps the
        browser's session (SameSite=Lax), so a form open in another tab
        still goes through.
        """
        self.browser.get(self.console.url + "producers/new")
        form_tab = self.browser.current_window_handle
        before = self.browser.get_cookie("jack_console_csrf")["value"]
        name = unique("Two tabs")
        self.css("#name").send_keys(name)
        page = Page(f'<a id=console href="{self.console.url}producers">Jack Console</a>')
        self.addCleanup(page.stop)
        self.browser.switch_to.new_window("tab")
        try:
            self.browser.get(page.url("localhost"))  # another site than 127.0.0.1
            click_and_wait(self.browser, self.css("#console"))
            self.wait_for_title("^Producers")
            self.assertEqual(self.browser.get_cookie("jack_console_csrf")["value"], before)
        finally:
            self.browser.close()
            self.browser.switch_to.window(form_tab)
        click_and_wait(self.browser, self.css("form button[type=submit]"))
        self.wait_for_title(re.escape(name))
        self.assertIn("Producer created", self.css("#created").text)
        self.assertIn(name, self.producer_names())
