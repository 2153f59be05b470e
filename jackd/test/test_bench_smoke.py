"""
The benchmark harness in ``bench/`` (``make bench``) keeps working: a smoke
run of a few seconds per variant drives every kind of server and client it
has (the echo servers, Jack, Celery into Redis and RabbitMQ, RQ) and writes
its three outputs.  Its numbers mean nothing and no target is checked; the
report's arithmetic is tested on made-up runs.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from jackd.test.sourcetree import findSourceTree
from jackd.testing.services import missing

ROOT = findSourceTree()


def _bench_importable():
    """Make C{bench} importable from the source tree, or skip."""
    if ROOT is None or not ROOT.child("bench").child("run.py").isfile():
        raise SkipTest("no source tree with bench/ (an installed copy of Jack)")
    if ROOT.path not in sys.path:
        sys.path.insert(0, ROOT.path)


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class SmokeRunTests(TestCase):
    def test_smoke_run(self):
        """
        ``python -m bench --smoke`` measures each smoke variant once without
        errors, in both phases, and writes the JSON results, the Markdown
        table (a row per variant, a line per ratio) and the PNG chart.
        """
        _bench_importable()
        for module in ("hdrh", "celery", "rq", "redis", "matplotlib"):
            try:
                __import__(module)
            except ImportError:
                missing(self, f"{module} is not installed (pip install '.[dev]')")
        if shutil.which("redis-server") is None:
            missing(self, "redis-server is not installed")
        if not _listening(5672):
            missing(self, "RabbitMQ is not running on 127.0.0.1:5672")
        from bench.variants import BY_NAME, SMOKE

        out = tempfile.mkdtemp(prefix="jack-bench-smoke-")
        self.addCleanup(shutil.rmtree, out, True)
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT.path + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        run = subprocess.run(
            [sys.executable, "-m", "bench", "--smoke", "--out", out, "--name", "smoke"],
            cwd=ROOT.path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.assertEqual(run.returncode, 0, run.stderr[-3000:])

        with open(os.path.join(out, "smoke.json")) as f:
            document = json.load(f)
        self.assertEqual(list(document["variants"]), list(SMOKE))
        for name in SMOKE:
            entry = document["variants"][name]
            self.assertNotIn("skipped", entry, name)
            [rep] = entry["reps"]
            self.assertNotIn("failed", rep, name)
            closed, opened = rep["closed"], rep["open"]
            self.assertEqual((closed["errors"], closed["error_samples"]), (0, {}), name)
            self.assertGreater(closed["calls"], 0, name)
            self.assertEqual(closed["jobs"], closed["calls"] * (BY_NAME[name].bulk or 1), name)
            self.assertEqual(opened["errors"], 0, name)
            self.assertGreater(opened["latency"]["count"], 0, name)
            self.assertEqual(opened["basis"],
                             "echo" if BY_NAME[name].open_basis == "echo" else "own", name)
        machine = document["machine"]
        self.assertEqual(machine["pinned"], len(os.sched_getaffinity(0)) >= 2)

        with open(os.path.join(out, "smoke.md")) as f:
            table = f.read()
        for name in SMOKE:
            self.assertIn(f"| {BY_NAME[name].label} |", table)
        self.assertIn("| Jack Enqueue / grpc.aio echo, calls/s |", table)
        with open(os.path.join(out, "smoke.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


def _phase(calls_per_s, errors=0, p99=None, bulk=1):
    phase = {
        "calls_per_s": calls_per_s,
        "jobs_per_s": calls_per_s * bulk,
        "errors": errors,
        "valid": errors == 0 and calls_per_s > 0,
        "server_cores": 1.0, "load_cores": 0.8, "helper_cores": 0.0, "other_cores": 0.1,
        "server_cpu_us_per_job": 1e6 / (calls_per_s * bulk),
    }
    if p99 is not None:
        from bench import stats

        histogram = stats.new_histogram()
        stats.record(histogram, p99 / 1000)
        phase.update(latency=stats.summarize(histogram),
                     latency_hist=stats.encode(histogram), rate=100.0,
                     lag=stats.summarize(histogram), basis="echo")
    return phase


def _document(echo, jack):
    """A made-up run of the echo and Jack Enqueue, one tuple per repetition."""
    variants = {}
    for name, reps in (("echo-aio", echo), ("jack-enqueue", jack)):
        variants[name] = {"label": name, "group": "jack", "bulk": 0, "concurrency": 64,
                          "reps": [
                              {"rep": i, "closed": _phase(calls, errors),
                               "open": _phase(calls, errors, p99)}
                              for i, (calls, errors, p99) in enumerate(reps)
                          ]}
    return {"variants": variants}


class ReportTests(SynchronousTestCase):
    def setUp(self):
        _bench_importable()
        from bench import report

        self.report = report

    def _ratio(self, document, name):
        self.report.analyse(document)
        [result] = [r for r in document["ratios"] if r["name"] == name]
        return result

    def test_ratio_per_repetition(self):
        """
        A ratio is taken within each repetition and its median is compared
        with the target.
        """
        document = _document(echo=[(1000, 0, 2), (2000, 0, 2), (1500, 0, 2)],
                             jack=[(900, 0, 2), (1000, 0, 2), (1350, 0, 2)])
        result = self._ratio(document, "Jack Enqueue / grpc.aio echo, calls/s")
        self.assertEqual(result["per_rep"], [0.9, 0.5, 0.9])
        self.assertEqual(result["median"], 0.9)
        self.assertEqual(result["verdict"], "met")

    def test_repetition_with_errors_is_no_result(self):
        """
        A repetition with errors is left out of the ratio and the summary;
        with no repetition left the target has no result (neither met nor
        missed).
        """
        document = _document(echo=[(1000, 0, 2), (1000, 0, 2)],
                             jack=[(2000, 3, 2), (500, 0, 2)])
        result = self._ratio(document, "Jack Enqueue / grpc.aio echo, calls/s")
        self.assertEqual(result["per_rep"], [0.5])
        self.assertEqual(result["verdict"], "missed")
        summary = document["variants"]["jack-enqueue"]["summary"]
        self.assertEqual((summary["valid_closed"], summary["calls_per_s"]), (1, 500))
        self.assertEqual(summary["errors"], 6)

        document = _document(echo=[(1000, 0, 2)], jack=[(2000, 1, 2)])
        result = self._ratio(document, "Jack Enqueue / grpc.aio echo, calls/s")
        self.assertEqual((result["median"], result["verdict"]), (None, "no result"))
        self.assertFalse(document["summary"]["complete"])

    def test_latency_target_is_an_upper_bound(self):
        """The p99 ratio is met at or under its bound, missed over it."""
        document = _document(echo=[(1000, 0, 2.0)], jack=[(900, 0, 2.5)])
        result = self._ratio(
            document, "Jack Enqueue / grpc.aio echo, p99 at the same open-loop rate")
        self.assertAlmostEqual(result["median"], 1.25, places=2)
        self.assertEqual(result["verdict"], "met")
        document = _document(echo=[(1000, 0, 2.0)], jack=[(900, 0, 3.0)])
        result = self._ratio(
            document, "Jack Enqueue / grpc.aio echo, p99 at the same open-loop rate")
        self.assertEqual(result["verdict"], "missed")

    def test_variants_not_run(self):
        """Ratios of variants that were not run are marked so and not counted."""
        document = _document(echo=[(1000, 0, 2)], jack=[(900, 0, 2)])
        result = self._ratio(
            document, "Jack Enqueue (noop) / Celery apply_async (Redis), jobs/s")
        self.assertEqual(result["verdict"], "not run")
        self.assertEqual(document["summary"]["targets_met"], 2)
