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



class CountingClock(Clock):
    """A Clock that counts how often it was read."""

    readings = 0

    def seconds(self):
        self.readings += 1
        return super().seconds()


class NewManyTests(SynchronousTestCase):
    def test_same_as_new(self):
        """
        new_many(n) makes the ids that n calls of new make while the clock
        stands still, in the same order, before and after other ids.
        """
        made = []
        for batch in (lambda ids, n: ids.new_many(n),
                      lambda ids, n: [ids.new() for _ in range(n)]):
            clock = Clock()
            clock.advance(1796300000.123456)
            ids = JobIdGenerator(clock, randbytes=counting_bytes(1 << 60))
            run = [ids.new()] + batch(ids, 100) + batch(ids, 1)
            clock.advance(0.002)
            made.append(run + batch(ids, 3) + [ids.new()])
        self.assertEqual(made[0], made[1])
        self.assertEqual(len(made[0]), 106)

    def test_shape_sorted_unique(self):
        """Ids from new_many have the shape of new's and ascend strictly."""
        clock = Clock()
        clock.advance(1_700_000_000)
        made = JobIdGenerator(clock).new_many(3000)
        for job_id in made:
            self.assertRegex(job_id, r"\Ajob_[0-9A-HJKMNP-TV-Z]{26}\Z")
        self.assertEqual(made, sorted(set(made)))
        self.assertEqual(job_id_time(made[-1]).timestamp(), 1_700_000_000)

    def test_carries_into_the_shared_characters(self):
        """
        A run that counts past a multiple of 2**20 changes more than the last
        four characters, exactly as single ids do.
        """
        start = (1 << 20) - 2  # the random part starts two below the carry
        made = []
        for batch in (lambda ids: ids.new_many(4), lambda ids: [ids.new() for _ in range(4)]):
            ids = JobIdGenerator(Clock(), randbytes=lambda n: start.to_bytes(n, "big"))
            made.append(batch(ids))
        self.assertEqual(made[0], made[1])
        self.assertEqual(made[0], sorted(made[0]))
        self.assertNotEqual(made[0][1][:-4], made[0][2][:-4])

    def test_one_reading_one_draw(self):
        """A bulk of ids reads the clock once and draws random bytes once."""
        clock = CountingClock()
        draws = []
        ids = JobIdGenerator(clock, randbytes=lambda n: draws.append(n) or bytes(n))
        ids.new_many(1000)
        self.assertEqual((clock.readings, draws), (1, [10]))

    def test_random_part_overflow(self):
        """
        When the 80 bits run out within a bulk, the rest of it moves to the
        next millisecond with a fresh random start, as with new.
        """
        ids = JobIdGenerator(Clock(), randbytes=lambda n: b"\xff" * n)
        made = ids.new_many(3)
        self.assertEqual(made, sorted(set(made)))
        self.assertEqual(
            [job_id_time(job_id) - job_id_time(made[0]) for job_id in made],
            [datetime.timedelta(milliseconds=ms) for ms in (0, 1, 2)],
        )
        again = JobIdGenerator(Clock(), randbytes=lambda n: b"\xff" * n)
        self.assertEqual([again.new() for _ in range(3)], made)

    def test_none(self):
        """new_many(0) is an empty list and uses up no id."""
        clock = Clock()
        ids = JobIdGenerator(clock, randbytes=counting_bytes())
        self.assertEqual(ids.new_many(0), [])
        self.assertEqual(ids.new(), JobIdGenerator(clock, randbytes=counting_bytes()).new())


class ProducerIdTests(SynchronousTestCase):
    def test_shape(self):
        """Producer ids are prod_ and 22 URL-safe characters, and differ."""
        made = {new_producer_id() for _ in range(100)}
        self.assertEqual(len(made), 100)
        for producer_id in made:
            self.assertRegex(producer_id, r"\Aprod_[A-Za-z0-9_-]{22}\Z")
