from twisted.trial.unittest import SynchronousTestCase

from jackd.units import parse_duration, parse_size


class DurationTests(SynchronousTestCase):
    def test_units(self):
        """Durations take ms, s, m, h and d suffixes; a bare number is seconds."""
        self.assertEqual(
            [parse_duration(t) for t in ["500ms", "30s", "5m", "2h", "30d", "1.5", "0"]],
            [0.5, 30.0, 300.0, 7200.0, 2592000.0, 1.5, 0.0],
        )

    def test_rejects(self):
        """Anything else raises ValueError that names the text and the units."""
        for text in ["", "s", "10 parsecs", "-1s", "1e3s", "3w"]:
            with self.assertRaises(ValueError) as caught:
                parse_duration(text)
            self.assertIn(repr(text), str(caught.exception))
            self.assertIn("ms, s, m, h or d", str(caught.exception))


class SizeTests(SynchronousTestCase):
    def test_units(self):
        """Sizes are bytes with optional decimal or binary units."""
        self.assertEqual(
            [parse_size(t) for t in ["1", "1B", "2KB", "1MiB", "10MiB", "3GB", "1KiB"]],
            [1, 1, 2000, 1048576, 10485760, 3 * 10**9, 1024],
        )

    def test_rejects(self):
        """Fractions, negatives and unknown units raise ValueError."""
        for text in ["", "1.5MiB", "-1", "1mib", "1TB", "MiB"]:
            with self.assertRaises(ValueError) as caught:
                parse_size(text)
            self.assertIn(repr(text), str(caught.exception))
