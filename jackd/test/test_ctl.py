"""
Tests for L{jackd.ctl}, the C{jackctl} command-line client.

L{ParsingTests} need no server.  L{DaemonTests} run C{jackctl} in-process
against one real C{twistd jack} subprocess, shared by the tests of this module
(trial runs no C{setUpClass}), started on first use and stopped when the test
process exits.
"""

import atexit
import base64
import datetime
import io
import json
import signal
import time
import uuid

from google.protobuf import json_format
from twisted.trial import unittest

from jack import admin_pb2, job_pb2, jobs_pb2
from jackd import ctl
from jackd.testing.daemon import JackProcess, free_port


def run(argv, stdin=b"", environ=None):
    """
    Run C{jackctl argv} in-process.

    @return: C{(exit status, stdout text, stderr text)}.
    """
    stdout, stderr = io.StringIO(), io.StringIO()
    status = ctl.main(
        argv, stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr,
        environ={} if environ is None else environ,
    )
    return status, stdout.getvalue(), stderr.getvalue()


def request_for(argv, stdin=b""):
    """
    The request message C{jackctl argv} would send.
    """
    args, request = ctl.parse_command(argv, io.BytesIO(stdin), environ={})
    return request


def unused_address():
    """
    An address where nothing listens, so that any RPC fails UNAVAILABLE.
    """
    return f"127.0.0.1:{free_port()}"


class ParsingTests(unittest.SynchronousTestCase):
    """
    What jackctl does before it makes any call.
    """

    def assertUsageError(self, argv, needle, stdin=b""):
        """
        C{jackctl --addr <nothing listens> argv} exits 2 with C{needle} in its
        error output.  Had it sent a request, it would exit 1 (UNAVAILABLE).
        """
        status, out, err = run(["--addr", unused_address(), *argv], stdin)
        self.assertEqual((status, out), (2, ""), err)
        self.assertIn(needle, err)
        self.assertNotIn("UNAVAILABLE", err)
        return err

    def test_durations(self):
        """
        `parse_duration` reads a number with one of the units ms, s, m, h, d.
        """
        td = datetime.timedelta
        for text, expected in [
            ("500ms", td(milliseconds=500)),
            ("30s", td(seconds=30)),
            ("1.5s", td(seconds=1.5)),
            ("5m", td(minutes=5)),
            ("2h", td(hours=2)),
            ("1d", td(days=1)),
            ("0s", td(0)),
        ]:
            self.assertEqual(ctl.parse_duration(text), expected, text)

    def test_delay_bad(self):
        """
        `jackctl enqueue --delay` with no unit, an unknown unit or a negative
        number is a usage error that names the accepted units.
        """
        for text in ["5", "5x", "-5s", "s", "1h30m"]:
            err = self.assertUsageError(
                ["enqueue", "prod_x", "t", f"--delay={text}"], "invalid duration"
            )
            self.assertIn("ms, s, m, h, d", err)

    def test_delay(self):
        """
        `jackctl enqueue --delay 5m` sets run_at to five minutes from now.
        """
        before = datetime.datetime.now(datetime.timezone.utc)
        request = request_for(["enqueue", "prod_x", "t", "--delay", "5m"])
        after = datetime.datetime.now(datetime.timezone.utc)
        run_at = request.run_at.ToDatetime(tzinfo=datetime.timezone.utc)
        delay = datetime.timedelta(minutes=5)
        self.assertTrue(before + delay <= run_at <= after + delay, run_at)

    def test_delay_milliseconds(self):
        """
        `jackctl enqueue --delay 500ms` sets run_at half a second from now.
        """
        before = datetime.datetime.now(datetime.timezone.utc)
        request = request_for(["enqueue", "prod_x", "t", "--delay", "500ms"])
        run_at = request.run_at.ToDatetime(tzinfo=datetime.timezone.utc)
        delta = run_at - before
        self.assertTrue(
            datetime.timedelta(milliseconds=500) <= delta
            < datetime.timedelta(milliseconds=900),
            delta,
        )

    def test_run_at(self):
        """
        `jackctl enqueue --run-at` takes an RFC 3339 timestamp with any offset.
        """
        request = request_for(
            ["enqueue", "prod_x", "t", "--run-at", "2030-01-02T05:04:05.25+02:00"]
        )
        self.assertEqual(request.run_at.ToJsonString(), "2030-01-02T03:04:05.250Z")

    def test_run_at_bad(self):
        """
        `jackctl enqueue --run-at` without a valid RFC 3339 timestamp is a
        usage error.
        """
        for text in ["tomorrow", "2030-01-02 03:04:05", "2030-13-02T03:04:05Z",
                     "2030-01-02T03:04:05", "2030-01-02"]:
            err = self.assertUsageError(
                ["enqueue", "prod_x", "t", "--run-at", text], "invalid RFC 3339"
            )
            self.assertIn("a date, a time and a time zone, such as", err)

    def test_timeout_positive(self):
        """
        `jackctl --timeout` must be a positive number of seconds.
        """
        for text in ["0", "-1", "soon"]:
            self.assertUsageError(["--timeout", text, "health"], "positive number of seconds")

    def test_run_at_and_delay(self):
        """
        `jackctl enqueue` refuses --run-at together with --delay.
        """
        self.assertUsageError(
            ["enqueue", "prod_x", "t", "--run-at", "2030-01-02T03:04:05Z",
             "--delay", "5s"],
            "not allowed with argument",
        )

    def test_no_schedule(self):
        """
        `jackctl enqueue` without --run-at or --delay leaves run_at unset.
        """
        request = request_for(["enqueue", "prod_x", "t"])
        self.assertFalse(request.HasField("run_at"))
        self.assertEqual(request.payload, b"")

    def test_fields(self):
        """
        `jackctl enqueue PRODUCER_ID JOB_TYPE --trace-id T` fills in
        producer_id, job_type and trace_id.
        """
        request = request_for(["enqueue", "prod_x", "send-mail", "--trace-id", "tr-1"])
        self.assertEqual(
            request,
            jobs_pb2.EnqueueRequest(
                producer_id="prod_x", job_type="send-mail", trace_id="tr-1"
            ),
        )

    def test_payload_string(self):
        """
        `jackctl enqueue --payload` sends the string encoded as UTF-8.
        """
        request = request_for(["enqueue", "prod_x", "t", "--payload", "héllo"])
        self.assertEqual(request.payload, "héllo".encode("utf-8"))

    def test_payload_file(self):
        """
        `jackctl enqueue --payload-file PATH` sends the file's bytes unchanged,
        including bytes that are not UTF-8.
        """
        data = bytes(range(256)) * 3
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        request = request_for(["enqueue", "prod_x", "t", "--payload-file", path])
        self.assertEqual(request.payload, data)

    def test_payload_stdin(self):
        """
        `jackctl enqueue` reads the payload from stdin when --payload-file
        is -.
        """
        data = b"\x00\xffstdin bytes\n"
        request = request_for(["enqueue", "prod_x", "t", "--payload-file", "-"], data)
        self.assertEqual(request.payload, data)

    def test_payload_file_missing(self):
        """
        `jackctl enqueue --payload-file` with a file that cannot be opened is
        a usage error naming the file.
        """
        path = self.mktemp()
        self.assertUsageError(
            ["enqueue", "prod_x", "t", "--payload-file", path], f"can't open {path!r}"
        )

    def test_payload_both(self):
        """
        `jackctl enqueue` refuses --payload together with --payload-file.
        """
        self.assertUsageError(
            ["enqueue", "prod_x", "t", "--payload", "a", "--payload-file", "-"],
            "not allowed with argument",
        )

    def test_job_type_defaults(self):
        """
        `jackctl create-job-type` without --queue or --max-retries sends
        QUEUE_UNSPECIFIED and no max_retries at all.
        """
        request = request_for(["create-job-type", "prod_x", "t"])
        self.assertEqual(request.queue, job_pb2.QUEUE_UNSPECIFIED)
        self.assertFalse(request.HasField("max_retries"))

    def test_job_type_options(self):
        """
        `jackctl create-job-type --queue high --max-retries 0` sends
        QUEUE_HIGH and a max_retries that is present and 0.
        """
        request = request_for(
            ["create-job-type", "prod_x", "t", "--queue", "high", "--max-retries", "0",
             "--description", "d"]
        )
        self.assertEqual(request.queue, job_pb2.QUEUE_HIGH)
        self.assertTrue(request.HasField("max_retries"))
        self.assertEqual(request.max_retries, 0)
        self.assertEqual(request.description, "d")

    def test_job_type_bad_queue(self):
        """
        `jackctl create-job-type --queue` accepts only immediate, high, medium
        and low.
        """
        self.assertUsageError(
            ["create-job-type", "prod_x", "t", "--queue", "urgent"], "invalid choice"
        )

    def test_list_paging(self):
        """
        `jackctl list-job-types --page-size N --page-token T` sends them.
        """
        request = request_for(
            ["list-job-types", "prod_x", "--page-size", "7", "--page-token", "tok"]
        )
        self.assertEqual(
            request,
            admin_pb2.ListJobTypesRequest(
                producer_id="prod_x", page_size=7, page_token="tok"
            ),
        )

    def test_bulk_lines(self):
        """
        `jackctl enqueue-bulk` reads one EnqueueRequest per line in protobuf's
        JSON mapping (payload in base64), skipping blank lines.
        """
        lines = (
            b'{"producerId": "prod_a", "jobType": "t1", "payload": "'
            + base64.b64encode(b"\x00\x01") + b'"}\n'
            b"\n   \n"
            b'{"producer_id": "prod_b", "job_type": "t2", '
            b'"runAt": "2030-01-02T03:04:05Z", "traceId": "x"}\n'
        )
        request = request_for(["enqueue-bulk"], lines)
        self.assertEqual(
            request,
            jobs_pb2.EnqueueBulkRequest(
                jobs=[
                    jobs_pb2.EnqueueRequest(
                        producer_id="prod_a", job_type="t1", payload=b"\x00\x01"
                    ),
                    jobs_pb2.EnqueueRequest(
                        producer_id="prod_b", job_type="t2",
                        run_at={"seconds": 1893553445}, trace_id="x",
                    ),
                ]
            ),
        )

    def test_bulk_base64(self):
        """
        `jackctl enqueue-bulk` accepts payloads in standard or URL-safe
        base64, with or without padding.
        """
        data = b"\xfb\xff\xfe"
        lines = b"".join(
            b'{"producerId": "p", "jobType": "t", "payload": "%s"}\n' % encoded
            for encoded in [
                base64.b64encode(data),
                base64.urlsafe_b64encode(data),
                base64.b64encode(b"hi"),
                base64.b64encode(b"hi").rstrip(b"="),
            ]
        )
        request = request_for(["enqueue-bulk"], lines)
        self.assertEqual(
            [job.payload for job in request.jobs], [data, data, b"hi", b"hi"]
        )

    def test_bulk_file(self):
        """
        `jackctl enqueue-bulk FILE` reads the lines from FILE.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'{"producerId": "prod_a", "jobType": "t1"}\n')
        request = request_for(["enqueue-bulk", path])
        self.assertEqual(
            list(request.jobs),
            [jobs_pb2.EnqueueRequest(producer_id="prod_a", job_type="t1")],
        )

    def test_bulk_bad_line(self):
        """
        `jackctl enqueue-bulk` with a line that is not an EnqueueRequest
        (bad JSON, an unknown field, a wrong type, a payload that is not
        base64, bad UTF-8)
        is a usage error naming the line's number, and sends nothing.
        """
        good = b'{"producerId": "prod_a", "jobType": "t1"}\n'
        for bad in [
            b"{not json",
            b'{"producerId": "prod_a", "color": "red"}',
            b'{"producerId": 5}',
            b'{"payload": "***"}',
            b'{"payload": "hello"}',
            b'{"payload": "aGk=="}',
            b'{"payload": "hello world"}',
            b'{"runAt": "soon"}',
            b'["producerId"]',
            b'{"producerId": "\xff"}',
        ]:
            self.assertUsageError(["enqueue-bulk"], "line 4:", good + b"\n" + good + bad)

    def test_bulk_empty(self):
        """
        `jackctl enqueue-bulk` with no jobs in its input is a usage error.
        """
        self.assertUsageError(["enqueue-bulk"], "no jobs to enqueue", b"\n \n")

    def test_bulk_missing_file(self):
        """
        `jackctl enqueue-bulk FILE` with a FILE that cannot be opened is a
        usage error.
        """
        self.assertUsageError(["enqueue-bulk", self.mktemp()], "can't open")

    def test_no_command(self):
        """
        `jackctl` without a subcommand is a usage error.
        """
        self.assertUsageError([], "required: COMMAND")

    def test_missing_argument(self):
        """
        `jackctl create-job-type` without a NAME is a usage error.
        """
        self.assertUsageError(["create-job-type", "prod_x"], "NAME")

    def test_help(self):
        """
        `jackctl enqueue-bulk --help` exits 0 and says that a rejected job
        makes the exit status 1.
        """
        status, out, err = run(["enqueue-bulk", "--help"])
        self.assertEqual((status, err), (0, ""))
        self.assertIn("Exits 1 when any job has a non-zero code", " ".join(out.split()))

    def test_addr_default(self):
        """
        `jackctl --addr` defaults to $JACK_ADDR, else localhost:50051.
        """
        parse = lambda environ: ctl.make_parser(environ).parse_args(["health"]).addr
        self.assertEqual(parse({}), "localhost:50051")
        self.assertEqual(parse({"JACK_ADDR": "jack.example:1234"}), "jack.example:1234")
        args = ctl.make_parser({"JACK_ADDR": "a:1"}).parse_args(
            ["--addr", "b:2", "health"]
        )
        self.assertEqual(args.addr, "b:2")

    def test_unavailable(self):
        """
        `jackctl` reports an RPC error on stderr as ``jackctl: STATUS: details``
        and exits 1.
        """
        status, out, err = run(["--addr", unused_address(), "--timeout", "5", "health"])
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: UNAVAILABLE: "), err)
        self.assertEqual(err.count("\n"), 1, err)


_daemon = None


def daemon():
    """
    The daemon shared by this module's tests, started on first use.
    """
    global _daemon
    if _daemon is None:
        jack = JackProcess()
        atexit.register(jack.stop)
        jack.start()
        _daemon = jack
    return _daemon


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class DaemonTests(unittest.TestCase):
    """
    jackctl against a running C{twistd jack}.
    """

    def setUp(self):
        self.jack = daemon()

    def ctl(self, *argv, stdin=b""):
        """
        Run jackctl against the daemon.

        @return: C{(exit status, stdout, stderr)}.
        """
        return run(["--addr", self.jack.address, *argv], stdin)

    def ok(self, *argv, stdin=b""):
        """
        Run jackctl against the daemon, assert that it succeeds, and return
        its output parsed as JSON.
        """
        status, out, err = self.ctl(*argv, stdin=stdin)
        self.assertEqual((status, err), (0, ""), f"jackctl {argv}")
        return json.loads(out)

    def create_producer(self, prefix="p"):
        return self.ok("create-producer", unique(prefix))["producer"]

    def create_job_type(self, producer_id, *options):
        return self.ok("create-job-type", producer_id, unique("t"), *options)["jobType"]

    def test_health(self):
        """
        `jackctl health` prints the status as JSON and exits 0 when the
        server, and each of its services, is SERVING.
        """
        for service in [[], ["--service", "jack.BackgroundJobs"],
                        ["--service", "jack.AdminService"]]:
            status, out, err = self.ctl("health", *service)
            self.assertEqual((status, err), (0, ""))
            self.assertEqual(json.loads(out), {"status": "SERVING"})

    def test_health_unknown(self):
        """
        `jackctl health --service` with a service the server does not know
        reports NOT_FOUND and exits 1.
        """
        status, out, err = self.ctl("health", "--service", "jack.Nope")
        self.assertEqual((status, out), (1, ""))
        self.assertRegex(err, r"\Ajackctl: NOT_FOUND(: .*)?\n\Z")

    def test_health_draining(self):
        """
        `jackctl health` prints NOT_SERVING and exits 1 while a stopping
        daemon drains (--drain-delay).
        """
        jack = JackProcess(args=["--drain-delay", "3s"])
        self.addCleanup(jack.stop)
        jack.start()
        jack.signal(signal.SIGTERM)
        deadline = time.monotonic() + 2
        while True:
            status, out, err = run(["--addr", jack.address, "health"])
            if status != 0 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual((status, err), (1, ""), jack.log())
        self.assertEqual(json.loads(out), {"status": "NOT_SERVING"})
        self.assertEqual(jack.wait(10), -signal.SIGTERM)

    def test_services(self):
        """
        `jackctl services` lists the server's services, sorted, one a line.
        """
        status, out, err = self.ctl("services")
        self.assertEqual((status, err), (0, ""))
        names = out.splitlines()
        self.assertEqual(names, sorted(names))
        for name in [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "jack.AdminService",
            "jack.BackgroundJobs",
        ]:
            self.assertIn(name, names)

    def test_create_and_get_producer(self):
        """
        `jackctl create-producer` prints the new producer, with a ``prod_``
        id; `jackctl get-producer` prints the same producer.
        """
        name = unique("shop")
        created = self.ok("create-producer", name, "--description", "the shop")
        producer = created["producer"]
        self.assertTrue(producer["producerId"].startswith("prod_"), producer)
        self.assertEqual(
            (producer["name"], producer["description"]), (name, "the shop")
        )
        self.assertIn("createdAt", producer)
        fetched = self.ok("get-producer", producer["producerId"])
        self.assertEqual(fetched, created)

    def test_duplicate_producer(self):
        """
        `jackctl create-producer` with a name already taken reports
        ALREADY_EXISTS and exits 1.
        """
        name = unique("dup")
        self.ok("create-producer", name)
        status, out, err = self.ctl("create-producer", name)
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: ALREADY_EXISTS: "), err)

    def test_unknown_producer(self):
        """
        `jackctl get-producer` with an unknown id reports NOT_FOUND on stderr
        and exits 1.
        """
        status, out, err = self.ctl("get-producer", "prod_doesnotexist")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: NOT_FOUND: "), err)

    def test_list_producers_pages(self):
        """
        `jackctl list-producers --page-size 1` prints one producer and a
        next page token; following the tokens visits every producer once,
        in name order, the same ones `--all` prints in one response.
        """
        for _ in range(3):
            self.create_producer()
        everything = self.ok("list-producers", "--all", "--page-size", "1")
        self.assertNotIn("nextPageToken", everything)
        expected = [p["name"] for p in everything["producers"]]
        self.assertEqual(expected, sorted(expected))
        self.assertGreaterEqual(len(expected), 3)

        seen = []
        token = []
        while True:
            page = self.ok("list-producers", "--page-size", "1", *token)
            self.assertEqual(len(page["producers"]), 1, page)
            seen.append(page["producers"][0]["name"])
            if "nextPageToken" not in page:
                break
            token = ["--page-token", page["nextPageToken"]]
        self.assertEqual(seen, expected)

    def test_list_producers_all(self):
        """
        `jackctl list-producers --all` includes every producer created.
        """
        names = {self.create_producer()["name"] for _ in range(3)}
        everything = self.ok("list-producers", "--all", "--page-size", "2")
        listed = {p["name"] for p in everything["producers"]}
        self.assertEqual(names - listed, set())
        self.assertEqual(
            everything, self.ok("list-producers", "--all", "--page-size", "1000")
        )

    def test_job_type_queues(self):
        """
        `jackctl create-job-type --queue` routes the job type to that queue;
        without --queue it goes to QUEUE_MEDIUM with 3 retries.
        """
        producer_id = self.create_producer()["producerId"]
        for queue in ["immediate", "high", "medium", "low"]:
            job_type = self.create_job_type(producer_id, "--queue", queue)
            self.assertEqual(job_type["queue"], f"QUEUE_{queue.upper()}")
            self.assertEqual(job_type["producerId"], producer_id)
        job_type = self.create_job_type(producer_id)
        self.assertEqual((job_type["queue"], job_type["maxRetries"]), ("QUEUE_MEDIUM", 3))

    def test_job_type_zero_retries(self):
        """
        `jackctl create-job-type --max-retries 0` creates a job type with no
        retries (not the default of 3).
        """
        producer_id = self.create_producer()["producerId"]
        job_type = self.create_job_type(producer_id, "--max-retries", "0")
        self.assertEqual(job_type.get("maxRetries", 0), 0)
        job_type = self.create_job_type(producer_id, "--max-retries", "7")
        self.assertEqual(job_type["maxRetries"], 7)

    def test_job_type_bad_name(self):
        """
        `jackctl create-job-type` with a name outside the allowed characters
        reports INVALID_ARGUMENT and exits 1.
        """
        producer_id = self.create_producer()["producerId"]
        status, out, err = self.ctl("create-job-type", producer_id, "no spaces")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: INVALID_ARGUMENT: "), err)

    def test_list_job_types(self):
        """
        `jackctl list-job-types --page-size 1` prints one job type and a
        token; with --all it prints all of the producer's job types by name.
        """
        producer_id = self.create_producer()["producerId"]
        names = sorted(self.create_job_type(producer_id)["name"] for _ in range(3))
        page = self.ok("list-job-types", producer_id, "--page-size", "1")
        self.assertEqual([t["name"] for t in page["jobTypes"]], names[:1])
        self.assertIn("nextPageToken", page)
        second = self.ok("list-job-types", producer_id, "--page-size", "1",
                         "--page-token", page["nextPageToken"])
        self.assertEqual([t["name"] for t in second["jobTypes"]], names[1:2])
        everything = self.ok("list-job-types", producer_id, "--page-size", "1", "--all")
        self.assertEqual([t["name"] for t in everything["jobTypes"]], names)
        self.assertNotIn("nextPageToken", everything)

    def test_enqueue(self):
        """
        `jackctl enqueue` prints the job id Jack gave the job, whether the
        payload comes from --payload, --payload-file or stdin, and whether it
        runs now or after --delay.
        """
        producer_id = self.create_producer()["producerId"]
        job_type = self.create_job_type(producer_id, "--queue", "high")["name"]
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"\x00\xfffile")
        ids = set()
        for options, stdin in [
            ([], b""),
            (["--payload", "hello", "--trace-id", "trace-1"], b""),
            (["--payload-file", path], b""),
            (["--payload-file", "-"], b"\x00\xffstdin"),
            (["--payload", "later", "--delay", "1h"], b""),
            (["--run-at", "2000-01-01T00:00:00Z"], b""),
        ]:
            response = self.ok("enqueue", producer_id, job_type, *options, stdin=stdin)
            self.assertEqual(list(response), ["jobId"])
            self.assertRegex(response["jobId"], r"\Ajob_[0-9A-HJKMNP-TV-Z]{26}\Z")
            ids.add(response["jobId"])
        self.assertEqual(len(ids), 6)

    def test_enqueue_unknown_producer(self):
        """
        `jackctl enqueue` for an unknown producer reports NOT_FOUND and
        exits 1.
        """
        status, out, err = self.ctl("enqueue", "prod_doesnotexist", "t")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: NOT_FOUND: "), err)

    def test_enqueue_unknown_job_type(self):
        """
        `jackctl enqueue` for a job type its producer does not have reports
        NOT_FOUND and exits 1.
        """
        producer_id = self.create_producer()["producerId"]
        status, out, err = self.ctl("enqueue", producer_id, "nope")
        self.assertEqual((status, out), (1, ""))
        self.assertTrue(err.startswith("jackctl: NOT_FOUND: "), err)

    def bulk(self, lines):
        """
        Run `jackctl enqueue-bulk` with C{lines} (dicts) on stdin.

        @return: C{(exit status, EnqueueBulkResponse)}.
        """
        stdin = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        status, out, err = self.ctl("enqueue-bulk", stdin=stdin)
        self.assertEqual(err, "")
        return status, json_format.Parse(out, jobs_pb2.EnqueueBulkResponse())

    def test_enqueue_bulk(self):
        """
        `jackctl enqueue-bulk` exits 0 and prints a job id for every line
        when Jack accepts them all.
        """
        producer_id = self.create_producer()["producerId"]
        job_type = self.create_job_type(producer_id)["name"]
        payload = base64.b64encode(b"\x00bulk").decode("ascii")
        status, response = self.bulk(
            [{"producerId": producer_id, "jobType": job_type, "payload": payload}] * 3
        )
        self.assertEqual(status, 0)
        self.assertEqual([r.index for r in response.results], [0, 1, 2])
        self.assertEqual([r.code for r in response.results], [0, 0, 0])
        self.assertTrue(all(r.job_id.startswith("job_") for r in response.results))
        self.assertEqual(len({r.job_id for r in response.results}), 3)

    def test_enqueue_bulk_mixed(self):
        """
        `jackctl enqueue-bulk` prints every job's result, in order, and exits
        1 when any job is rejected; the other jobs are still enqueued.
        """
        producer_id = self.create_producer()["producerId"]
        job_type = self.create_job_type(producer_id)["name"]
        # Within MAX_SCHEDULE_AHEAD (30 days).
        tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        status, response = self.bulk([
            {"producerId": producer_id, "jobType": job_type},
            {"producerId": producer_id, "jobType": "nope"},
            {"producerId": "prod_doesnotexist", "jobType": job_type},
            {"producerId": producer_id},
            {"producerId": producer_id, "jobType": job_type,
             "runAt": tomorrow.strftime("%Y-%m-%dT%H:%M:%SZ")},
        ])
        self.assertEqual(status, 1)
        self.assertEqual([r.index for r in response.results], [0, 1, 2, 3, 4])
        self.assertEqual([r.code for r in response.results], [0, 5, 5, 3, 0])
        self.assertEqual(
            [bool(r.job_id) for r in response.results], [True, False, False, False, True]
        )
        self.assertEqual(
            [bool(r.error) for r in response.results], [False, True, True, True, False]
        )
