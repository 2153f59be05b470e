import datetime

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from jackd.ids import JobIdGenerator, job_id_time, new_producer_id

UTC = datetime.UTC


def counting_bytes(start=0):
    """A randbytes stand-in that counts, so tests can predict the ids."""
    state = [start]

    def randbytes(n):
        state[0] += 1
        return state[0].to_bytes(n, "big")

    return randbytes


class JobIdTests(SynchronousTestCase):
    def test_shape(self):
        """A job id is job_ and 26 Crockford base32 characters."""
        job_id = JobIdGenerator(Clock()).new()
        self.assertRegex(job_id, r"\Ajob_[0-9A-HJKMNP-TV-Z]{26}\Z")

    def test_encoding(self):
        """
        The 48-bit millisecond count and the 80 further bits are written
        most significant first, five bits to a Crockford base32 character.
        """
        clock = Clock()
        clock.advance(1796300000.123456)
        ids = JobIdGenerator(clock, randbytes=lambda n: bytes(range(1, n + 1)))
        self.assertEqual(
            [ids.new(), ids.new()],
            ["job_01M8XX5JVV041061050R3GG28A", "job_01M8XX5JVV041061050R3GG28B"],
        )
        ids = JobIdGenerator(Clock(), randbytes=lambda n: b"\xff" * n)
        self.assertEqual(
            [ids.new(), ids.new()],
            ["job_0000000000ZZZZZZZZZZZZZZZZ", "job_0000000001ZZZZZZZZZZZZZZZZ"],
        )

    def test_time_decodes(self):
        """job_id_time gives back the clock's time to the millisecond."""
        clock = Clock()
        clock.advance(1796300000.123456)
        job_id = JobIdGenerator(clock).new()
        self.assertEqual(
            job_id_time(job_id),
            datetime.datetime(2026, 12, 3, 12, 13, 20, 123000, tzinfo=UTC),
        )

    def test_sorted_over_time(self):
        """Ids made later sort after ids made earlier, as strings."""
        clock = Clock()
        clock.advance(1_700_000_000)
        ids = JobIdGenerator(clock)
        made = []
        for step in [0.001, 1, 0.0001, 86400, 0.5]:
            made.append(ids.new())
            clock.advance(step)
        self.assertEqual(made, sorted(made))
        self.assertEqual(len(set(made)), len(made))

    def test_sorted_within_a_millisecond(self):
        """In one millisecond, ids count up from a random start and stay unique."""
        ids = JobIdGenerator(Clock())
        made = [ids.new() for _ in range(1000)]
        self.assertEqual(made, sorted(made))
        self.assertEqual(len(set(made)), 1000)

    def test_clock_steps_back(self):
        """A clock that steps back never makes an id smaller than the last one."""
        clock = Clock()
        clock.advance(1000)
        ids = JobIdGenerator(clock)
        first = ids.new()
        clock.rightNow = 999
        second = ids.new()
        self.assertGreater(second, first)

    def test_random_part_overflow(self):
        """When the 80 bits run out within a millisecond the time part moves on."""
        clock = Clock()
        ids = JobIdGenerator(clock, randbytes=lambda n: b"\xff" * n)
        first, second = ids.new(), ids.new()
        self.assertGreater(second, first)
        self.assertEqual(
            job_id_time(second) - job_id_time(first), datetime.timedelta(milliseconds=1)
        )

    def test_unique_across_generators(self):
        """Two generators at the same instant make different ids (random start)."""
        clock = Clock()
        self.assertNotEqual(JobIdGenerator(clock).new(), JobIdGenerator(clock).new())

    def test_not_a_job_id(self):
        """job_id_time refuses anything that is not a job id."""
        good = JobIdGenerator(Clock()).new()
        for text in ["", "job_", good[:-1], "prod_" + good[4:], good[:-1] + "U",
                     "job_" + "Z" * 26]:
            self.assertRaises(ValueError, job_id_time, text)


class ProducerIdTests(SynchronousTestCase):
    def test_shape(self):
        """Producer ids are prod_ and 22 URL-safe characters, and differ."""
        made = {new_producer_id() for _ in range(100)}
        self.assertEqual(len(made), 100)
        for producer_id in made:
            self.assertRegex(producer_id, r"\Aprod_[A-Za-z0-9_-]{22}\Z")
