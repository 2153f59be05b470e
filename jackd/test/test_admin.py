"""Producer and job type management over the real memory store."""

import base64

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jack.admin_pb2 import JobType, Producer
from jack.job_pb2 import Queue
from jackd.admin import DEFAULT_PAGE_SIZE, Admin
from jackd.errors import AlreadyExists, InvalidArgument, NotFound
from jackd.storage.memory import MemoryConfigStore


class AdminTestCase(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_796_300_000.5)
        self.admin = Admin(MemoryConfigStore(), self.clock)

    def producer(self, name="billing", description=""):
        return self.successResultOf(self.admin.create_producer(name, description))

    def refused(self, d, error_class=InvalidArgument):
        return self.failureResultOf(d, error_class).value


class ProducerTests(AdminTestCase):
    def test_create(self):
        """A new producer gets a prod_ id and the clock's time; get returns it."""
        created = self.producer("Billing team", "invoices")
        self.assertRegex(created.producer_id, r"\Aprod_[A-Za-z0-9_-]{22}\Z")
        expected = Producer(
            producer_id=created.producer_id, name="Billing team", description="invoices"
        )
        expected.created_at.FromNanoseconds(1_796_300_000_500_000_000)
        self.assertEqual(created, expected)
        self.assertEqual(
            self.successResultOf(self.admin.get_producer(created.producer_id)), expected
        )

    def test_names(self):
        """A name may be any text up to 128 bytes without control characters."""
        for name in ["é" * 64, "<script>alert(1)</script>", "Team 🚀", " padded ",
                     "family 👨\u200d👩\u200d👧"]:
            self.assertEqual(self.producer(name).name, name)

    def test_normalized(self):
        """Names are kept in NFC: a decomposed twin of a name is a duplicate."""
        self.assertEqual(self.producer("cafe\u0301").name, "caf\u00e9")
        self.refused(self.admin.create_producer("caf\u00e9", ""), AlreadyExists)

    def test_bad_names(self):
        """Blank, overlong or control-character names are INVALID_ARGUMENT on name."""
        cases = {
            "": "name: is required and must not be blank",
            "   ": "name: is required and must not be blank",
            "é" * 64 + "x": "name: is longer than 128 bytes (UTF-8)",
            "a\nb": "name: must not contain control or invisible formatting characters (found U+000A)",
            "a\x00": "name: must not contain control or invisible formatting characters (found U+0000)",
            "a\x7f": "name: must not contain control or invisible formatting characters (found U+007F)",
            "a\x85": "name: must not contain control or invisible formatting characters (found U+0085)",
            "a\u2028b": "name: must not contain control or invisible formatting characters (found U+2028)",
            "\u202egnp.exe": "name: must not contain control or invisible formatting characters (found U+202E)",
            "\u200b\u200b": "name: must not contain control or invisible formatting characters (found U+200B)",
            "\u200d": "name: is required and must not be blank",
        }
        for name, message in cases.items():
            self.assertEqual(
                self.refused(self.admin.create_producer(name, "")).message, message
            )

    def test_description_limit(self):
        """A description holds up to 4096 bytes."""
        self.producer("a", "d" * 4096)
        self.assertEqual(
            self.refused(self.admin.create_producer("b", "d" * 4097)).field, "description"
        )

    def test_duplicate_name(self):
        """A second producer with a taken name is ALREADY_EXISTS."""
        self.producer("billing")
        error = self.refused(self.admin.create_producer("billing", ""), AlreadyExists)
        self.assertEqual(error.message, "name: a producer named 'billing' already exists")

    def test_get_unknown(self):
        """An unknown or missing producer id is NOT_FOUND / INVALID_ARGUMENT."""
        self.assertEqual(
            self.refused(self.admin.get_producer("prod_x"), NotFound).field, "producer_id"
        )
        self.assertEqual(self.refused(self.admin.get_producer("")).field, "producer_id")


class JobTypeTests(AdminTestCase):
    def setUp(self):
        super().setUp()
        self.producer_id = self.producer().producer_id

    def create(self, name="send-invoice", queue=Queue.QUEUE_UNSPECIFIED, retries=None,
               description="", producer_id=None):
        return self.admin.create_job_type(
            self.producer_id if producer_id is None else producer_id,
            name,
            queue,
            retries,
            description,
        )

    def test_defaults(self):
        """A job type created without queue or retries goes to MEDIUM with 3 retries."""
        created = self.successResultOf(self.create())
        expected = JobType(
            producer_id=self.producer_id,
            name="send-invoice",
            queue=Queue.QUEUE_MEDIUM,
            max_retries=3,
        )
        expected.created_at.FromNanoseconds(1_796_300_000_500_000_000)
        self.assertEqual(created, expected)

    def test_explicit(self):
        """Queue, max_retries (0 included) and description are kept as given."""
        created = self.successResultOf(self.create("a.b_c-9", Queue.QUEUE_LOW, 0, "nightly"))
        self.assertEqual(
            (created.name, created.queue, created.max_retries, created.description),
            ("a.b_c-9", Queue.QUEUE_LOW, 0, "nightly"),
        )

    def test_bad_fields(self):
        """Bad names, retries and queues are INVALID_ARGUMENT naming the field."""
        cases = [
            (self.create(""), "name"),
            (self.create("two words"), "name"),
            (self.create("_private"), "name"),
            (self.create("x" * 129), "name"),
            (self.create("path/like"), "name"),
            (self.create(retries=-1), "max_retries"),
            (self.create(retries=101), "max_retries"),
            (self.create(queue=99), "queue"),
            (self.create(description="d" * 4097), "description"),
            (self.create(producer_id=""), "producer_id"),
        ]
        for d, field in cases:
            self.assertEqual(self.refused(d).field, field)
        self.successResultOf(self.create("x" * 128, retries=100))

    def test_unknown_producer(self):
        """A job type for an unknown producer is NOT_FOUND on producer_id."""
        self.assertEqual(
            self.refused(self.create(producer_id="prod_x"), NotFound).field, "producer_id"
        )

    def test_duplicate(self):
        """The same name twice in one producer is ALREADY_EXISTS; in another it is fine."""
        self.successResultOf(self.create())
        self.refused(self.create(), AlreadyExists)
        other = self.producer("other").producer_id
        self.successResultOf(self.create(producer_id=other))


class PagingTests(AdminTestCase):
    def walk(self, list_page, page_size):
        items, token, pages = [], "", 0
        while True:
            page, token = self.successResultOf(list_page(page_size, token))
            items.extend(page)
            pages += 1
            if not token:
                return items, pages

    def test_default_page_size(self):
        """Without page_size a list answers the first 100, then the rest."""
        names = sorted(f"producer {i:03}" for i in range(150))
        for name in reversed(names):
            self.producer(name)
        first, token = self.successResultOf(self.admin.list_producers(0, ""))
        self.assertEqual(len(first), DEFAULT_PAGE_SIZE)
        rest, last = self.successResultOf(self.admin.list_producers(0, token))
        self.assertEqual([p.name for p in first + rest], names)
        self.assertEqual(last, "")

    def test_exact_pages(self):
        """A list that ends at a page boundary gives no token on its last page."""
        for i in range(4):
            self.producer(f"p{i}")
        items, pages = self.walk(self.admin.list_producers, 2)
        self.assertEqual(([p.name for p in items], pages), (["p0", "p1", "p2", "p3"], 2))

    def test_ten_thousand_job_types(self):
        """10,000 job types list completely, in name order, 1000 a page."""
        producer_id = self.producer().producer_id
        names = [f"type-{i:05}" for i in range(10_000)]
        for name in names:
            self.successResultOf(
                self.admin.create_job_type(producer_id, name, 0, None, "")
            )
        items, pages = self.walk(
            lambda size, token: self.admin.list_job_types(producer_id, size, token), 1000
        )
        self.assertEqual(([t.name for t in items], pages), (names, 10))

    def test_bad_requests(self):
        """Bad page sizes and tokens are INVALID_ARGUMENT naming the field."""
        producer_id = self.producer("a").producer_id
        self.producer("b")
        _, producers_token = self.successResultOf(self.admin.list_producers(1, ""))
        cases = [
            (self.admin.list_producers(-1, ""), "page_size"),
            (self.admin.list_producers(1001, ""), "page_size"),
            (self.admin.list_producers(1, "not a token"), "page_token"),
            (self.admin.list_producers(1, "eyJ4IjogMX0="), "page_token"),
            (self.admin.list_producers(1, base64.urlsafe_b64encode(b"[" * 200000).decode()),
             "page_token"),
            (self.admin.list_producers(1, base64.urlsafe_b64encode(b"\xff\x00a").decode()),
             "page_token"),
            (self.admin.list_job_types(producer_id, 1, producers_token), "page_token"),
            (self.admin.list_job_types("", 1, ""), "producer_id"),
        ]
        for d, field in cases:
            self.assertEqual(self.refused(d).field, field)
        self.successResultOf(self.admin.list_producers(1000, ""))

    def test_unknown_producer(self):
        """Listing the job types of an unknown producer is NOT_FOUND."""
        self.refused(self.admin.list_job_types("prod_x", 0, ""), NotFound)
