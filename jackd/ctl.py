"""
jackctl: a command-line client for Jack's gRPC API.

Each subcommand makes blocking gRPC calls with the generated stubs and prints
the response message in protobuf's JSON mapping.  Exit status: 0 on success,
1 when the server answers with an error (or, for ``health``, is not SERVING;
for ``enqueue-bulk``, rejects any job), 2 for usage errors.  ``pull`` talks to
Pub/Sub instead, to show what consumers receive.

`main` takes its arguments and streams as parameters so that tests can run it
in-process; the ``jackctl`` console script calls it with none.
"""

import argparse
import contextlib
import datetime
import json
import os
import re
import sys

import grpc
from google.protobuf import json_format, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jack import admin_pb2, admin_pb2_grpc, job_pb2, jobs_pb2, jobs_pb2_grpc
from jackd import units

DEFAULT_ADDR = "localhost:50051"

QUEUES = {
    "immediate": job_pb2.QUEUE_IMMEDIATE,
    "high": job_pb2.QUEUE_HIGH,
    "medium": job_pb2.QUEUE_MEDIUM,
    "low": job_pb2.QUEUE_LOW,
}

# The base64 alphabets proto3's JSON mapping accepts for bytes: standard or
# URL-safe, with or without padding.
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*")

_STATUS_NAMES = {status.value[0]: status.name for status in grpc.StatusCode}


class UsageError(Exception):
    """
    The command line asks for something impossible; reported like argparse's
    own errors (exit status 2) before any RPC is made.
    """


class CommandFailed(Exception):
    """
    The server answered, but not with success; the message goes to stderr and
    jackctl exits with status 1.
    """


def parse_duration(text):
    """
    Parse a duration such as ``500ms``, ``30s``, ``5m``, ``2h`` or ``1d``
    into a `datetime.timedelta`; a unit is required (``5`` is ambiguous on
    a command line).
    """
    try:
        if not text.strip() or text.strip()[-1].isdigit():
            raise ValueError(f"{text!r} has no unit")
        seconds = units.parse_duration(text)
        return datetime.timedelta(seconds=seconds)
    except (ValueError, OverflowError) as e:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: expected a number and a unit, "
            f"one of ms, s, m, h, d (for example 500ms, 30s, 5m, 2h, 1d): {e}"
        ) from None


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def parse_timestamp(text):
    """
    Parse an RFC 3339 timestamp (``2030-01-02T03:04:05Z``, any offset) into a
    `google.protobuf.Timestamp`.
    """
    timestamp = timestamp_pb2.Timestamp()
    try:
        timestamp.FromJsonString(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid RFC 3339 timestamp {text!r}: expected a date, a time and "
            "a time zone, such as 2030-01-02T03:04:05Z or "
            "2030-01-02T03:04:05+02:00"
        ) from None
    return timestamp


def _read_input(path, stdin):
    """
    The bytes of C{path}, or of C{stdin} when it is ``-``.
    """
    if path == "-":
        return stdin.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"can't open {path!r}: {e.strerror}") from None


def _check_base64(value):
    """
    Refuse text that is not base64.  protobuf's JSON parser decodes bytes
    leniently (``"***"`` becomes no bytes at all), so a payload written as
    plain text by mistake would otherwise be sent as garbage.
    """
    if not isinstance(value, str):
        return  # json_format reports the wrong type itself.
    digits = value.rstrip("=")
    padding = len(value) - len(digits)
    if (
        not _BASE64.fullmatch(digits)
        or len(digits) % 4 == 1
        or (padding and (padding > 2 or len(value) % 4))
    ):
        raise ValueError(f"payload is not base64: {value[:40]!r}")


def parse_enqueue_lines(data):
    """
    Parse JSON lines, each an EnqueueRequest in protobuf's JSON mapping, into
    an EnqueueBulkRequest.  Blank lines are skipped; a line that does not
    parse raises `UsageError` naming its (1-based) line number.
    """
    bulk = jobs_pb2.EnqueueBulkRequest()
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"line {number}: not UTF-8: {e}") from None
        if not text.strip():
            continue
        try:
            json_format.Parse(text, bulk.jobs.add())
            _check_base64(json.loads(text).get("payload", ""))
        except (json_format.ParseError, ValueError) as e:
            raise UsageError(f"line {number}: {e}") from None
    if not bulk.jobs:
        raise UsageError("no jobs to enqueue: the input has no JSON lines")
    return bulk


# Each subcommand is a pair: a request builder (args, stdin) -> message, which
# may raise UsageError, and a caller (channel, request, args) -> (output, exit
# status), which may raise grpc.RpcError or CommandFailed.  The output is a
# message (printed as JSON) or text.


def _health_request(args, stdin):
    return health_pb2.HealthCheckRequest(service=args.service)


def _health(channel, request, args):
    response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=args.timeout)
    serving = response.status == health_pb2.HealthCheckResponse.SERVING
    return response, 0 if serving else 1


def _services_request(args, stdin):
    return reflection_pb2.ServerReflectionRequest(list_services="")


def _services(channel, request, args):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    for response in stub.ServerReflectionInfo(iter([request]), timeout=args.timeout):
        break
    else:
        raise CommandFailed("the server closed the reflection stream without a reply")
    if response.HasField("error_response"):
        error = response.error_response
        name = _STATUS_NAMES.get(error.error_code, str(error.error_code))
        raise CommandFailed(f"{name}: {error.error_message}")
    names = sorted(s.name for s in response.list_services_response.service)
    return "".join(f"{name}\n" for name in names), 0


def _create_producer_request(args, stdin):
    return admin_pb2.CreateProducerRequest(
        name=args.name, description=args.description
    )


def _create_producer(channel, request, args):
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    return stub.CreateProducer(request, timeout=args.timeout), 0


def _get_producer_request(args, stdin):
    return admin_pb2.GetProducerRequest(producer_id=args.producer_id)


def _get_producer(channel, request, args):
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    return stub.GetProducer(request, timeout=args.timeout), 0


def _list_producers_request(args, stdin):
    return admin_pb2.ListProducersRequest(
        page_size=args.page_size, page_token=args.page_token
    )


def _list_job_types_request(args, stdin):
    return admin_pb2.ListJobTypesRequest(
        producer_id=args.producer_id,
        page_size=args.page_size,
        page_token=args.page_token,
    )


def _lister(method, items):
    """
    A caller for a paged List method.  With --all, it fetches every page from
    the requested one on and answers with one response that holds all the
    C{items} and no next_page_token.
    """

    def call(channel, request, args):
        rpc = getattr(admin_pb2_grpc.AdminServiceStub(channel), method)
        response = rpc(request, timeout=args.timeout)
        if not args.all:
            return response, 0
        combined = type(response)()
        while True:
            getattr(combined, items).extend(getattr(response, items))
            if not response.next_page_token:
                return combined, 0
            request.page_token = response.next_page_token
            response = rpc(request, timeout=args.timeout)

    return call


def _create_job_type_request(args, stdin):
    request = admin_pb2.CreateJobTypeRequest(
        producer_id=args.producer_id,
        name=args.name,
        queue=QUEUES[args.queue] if args.queue else job_pb2.QUEUE_UNSPECIFIED,
        description=args.description,
    )
    if args.max_retries is not None:
        request.max_retries = args.max_retries
    return request


def _create_job_type(channel, request, args):
    stub = admin_pb2_grpc.AdminServiceStub(channel)
    return stub.CreateJobType(request, timeout=args.timeout), 0


def _enqueue_request(args, stdin):
    request = jobs_pb2.EnqueueRequest(
        producer_id=args.producer_id, job_type=args.job_type, trace_id=args.trace_id
    )
    if args.payload is not None:
        request.payload = args.payload.encode("utf-8")
    elif args.payload_file is not None:
        request.payload = _read_input(args.payload_file, stdin)
    if args.run_at is not None:
        request.run_at.CopyFrom(args.run_at)
    elif args.delay is not None:
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            request.run_at.FromDatetime(now + args.delay)
        except (OverflowError, ValueError):
            raise UsageError(f"--delay {args.delay} ends after the year 9999") from None
    return request


def _enqueue(channel, request, args):
    stub = jobs_pb2_grpc.BackgroundJobsStub(channel)
    return stub.Enqueue(request, timeout=args.timeout), 0


def _enqueue_bulk_request(args, stdin):
    return parse_enqueue_lines(_read_input(args.file, stdin))


def _enqueue_bulk(channel, request, args):
    stub = jobs_pb2_grpc.BackgroundJobsStub(channel)
    response = stub.EnqueueBulk(request, timeout=args.timeout)
    failed = any(result.code != 0 for result in response.results)
    return response, 1 if failed else 0


def _pull_request(args, stdin):
    if args.max < 1 or args.max > 1000:
        raise UsageError("--max must be between 1 and 1000")
    subscription = args.subscription
    if not subscription.startswith("projects/"):
        if not args.project:
            raise UsageError(
                "give --project (or set PUBSUB_PROJECT), or a full "
                "projects/P/subscriptions/S name"
            )
        subscription = f"projects/{args.project}/subscriptions/{subscription}"
    return subscription


def _pull(channel, subscription, args):
    """
    Pull jobs from a Pub/Sub subscription (not from Jack: C{channel} is
    unused) and print each message's attributes and decoded envelope.
    Unless --ack, the messages are handed straight back (ack deadline 0),
    so a consumer still gets them.
    """
    import base64
    import time

    from google.api_core import exceptions
    from google.cloud import pubsub_v1

    messages = []
    try:
        with pubsub_v1.SubscriberClient() as subscriber:
            deadline = time.monotonic() + args.wait
            while not messages:
                response = subscriber.pull(
                    request={"subscription": subscription, "max_messages": args.max,
                             "return_immediately": True},
                    retry=None,
                    timeout=args.timeout,
                )
                messages = list(response.received_messages)
                if messages or time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
            if messages:
                ack_ids = [m.ack_id for m in messages]
                if args.ack:
                    subscriber.acknowledge(
                        request={"subscription": subscription, "ack_ids": ack_ids},
                        retry=None,
                        timeout=args.timeout,
                    )
                else:
                    subscriber.modify_ack_deadline(
                        request={"subscription": subscription, "ack_ids": ack_ids,
                                 "ack_deadline_seconds": 0},
                        retry=None,
                        timeout=args.timeout,
                    )
    except exceptions.GoogleAPICallError as e:
        name = e.grpc_status_code.name if e.grpc_status_code else type(e).__name__
        raise CommandFailed(f"Pub/Sub: {name}: {e.message}") from None
    except exceptions.GoogleAPIError as e:
        raise CommandFailed(f"Pub/Sub: {type(e).__name__}: {e}") from None
    printed = []
    for received in messages:
        message = received.message
        entry = {
            "messageId": message.message_id,
            "publishTime": message.publish_time.isoformat().replace("+00:00", "Z"),
            "attributes": dict(sorted(message.attributes.items())),
        }
        try:
            job = job_pb2.Job.FromString(message.data)
        except Exception:
            entry["data"] = base64.b64encode(message.data).decode("ascii")
        else:
            entry["job"] = json_format.MessageToDict(job)
        printed.append(entry)
    return json.dumps({"messages": printed}, indent=2) + "\n", 0


def _paging_options(parser):
    parser.add_argument(
        "--page-size", type=int, default=0, metavar="N",
        help="at most N items per page (the server's default when absent)",
    )
    parser.add_argument(
        "--page-token", default="", metavar="T",
        help="a next_page_token from an earlier call",
    )
    parser.add_argument(
        "--all", action="store_true",
        help="follow next_page_token and print every item in one response",
    )


def make_parser(environ=None):
    """
    Build jackctl's argument parser.  Each subcommand's namespace carries
    C{build} (args, stdin) -> request and C{call} (channel, request, args)
    -> (output, exit status).
    """
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="jackctl",
        description="Call Jack's gRPC API and print the response as JSON.",
        epilog="Exit status: 0 on success, 1 when the server answers with an "
        "error, 2 for usage errors.",
    )
    parser.add_argument(
        "--addr", default=environ.get("JACK_ADDR", DEFAULT_ADDR),
        help="the server's host:port (default: $JACK_ADDR, else %(default)s)",
    )
    parser.add_argument(
        "--timeout", type=_positive_seconds, default=10.0, metavar="SECONDS",
        help="deadline of each RPC in seconds (default: %(default)s)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, build, call, **kwargs):
        sub = commands.add_parser(name, **kwargs)
        sub.set_defaults(build=build, call=call, parser=sub)
        return sub

    sub = command(
        "health", _health_request, _health,
        help="check the server's health (exit 0 only when SERVING)",
        description="Ask grpc.health.v1.Health for a service's status. "
        "Exits 0 only when the status is SERVING.",
    )
    sub.add_argument(
        "--service", default="", metavar="NAME",
        help='a service name such as jack.BackgroundJobs ("" for the server)',
    )

    command(
        "services", _services_request, _services,
        help="list the services the server offers (via reflection)",
        description="List the server's services through server reflection, "
        "one name per line, sorted.",
    )

    sub = command("create-producer", _create_producer_request, _create_producer,
                  help="register a producer")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument("--description", default="", metavar="D")

    sub = command("get-producer", _get_producer_request, _get_producer,
                  help="show one producer")
    sub.add_argument("producer_id", metavar="PRODUCER_ID")

    sub = command("list-producers", _list_producers_request,
                  _lister("ListProducers", "producers"),
                  help="list producers")
    _paging_options(sub)

    sub = command("create-job-type", _create_job_type_request, _create_job_type,
                  help="register a job type for a producer")
    sub.add_argument("producer_id", metavar="PRODUCER_ID")
    sub.add_argument("name", metavar="NAME")
    sub.add_argument(
        "--queue", choices=sorted(QUEUES, key=QUEUES.get),
        help="the queue its jobs go to (the server picks medium when absent)",
    )
    sub.add_argument(
        "--max-retries", type=int, metavar="N",
        help="retries a consumer should make (the server's default when absent)",
    )
    sub.add_argument("--description", default="", metavar="D")

    sub = command("list-job-types", _list_job_types_request,
                  _lister("ListJobTypes", "job_types"),
                  help="list a producer's job types")
    sub.add_argument("producer_id", metavar="PRODUCER_ID")
    _paging_options(sub)

    sub = command("enqueue", _enqueue_request, _enqueue, help="enqueue one job")
    sub.add_argument("producer_id", metavar="PRODUCER_ID")
    sub.add_argument("job_type", metavar="JOB_TYPE")
    payload = sub.add_mutually_exclusive_group()
    payload.add_argument("--payload", metavar="STRING",
                         help="the payload: STRING encoded as UTF-8")
    payload.add_argument("--payload-file", metavar="PATH",
                         help="the payload: the bytes of PATH (- for stdin)")
    when = sub.add_mutually_exclusive_group()
    when.add_argument("--run-at", type=parse_timestamp, metavar="RFC3339",
                      help="when the job should run, e.g. 2026-12-24T09:00:00Z "
                      "(at most MAX_SCHEDULE_AHEAD, 30 days by default, ahead)")
    when.add_argument("--delay", type=parse_duration, metavar="DURATION",
                      help="run the job this long from now: 500ms, 30s, 5m, 2h, 1d")
    sub.add_argument("--trace-id", default="", metavar="T")

    sub = command(
        "enqueue-bulk", _enqueue_bulk_request, _enqueue_bulk,
        help="enqueue many jobs from JSON lines",
        description="Enqueue jobs in one EnqueueBulk call. Each non-blank line "
        "of FILE is an EnqueueRequest in protobuf's JSON mapping, e.g. "
        '{"producerId": "prod_...", "jobType": "send-mail", "payload": '
        '"aGk=", "runAt": "2026-12-24T09:00:00Z"} (payload is base64). A line '
        "that does not parse is a usage error and nothing is sent.",
        epilog="Prints the whole response. Exits 1 when any job has a non-zero "
        "code, even though the others were enqueued.",
    )
    sub.add_argument("file", nargs="?", default="-", metavar="FILE",
                     help="the JSON lines (default: - for stdin)")

    sub = command(
        "pull", _pull_request, _pull,
        help="print jobs from a Pub/Sub subscription (debugging)",
        description="Pull up to --max messages from a Pub/Sub subscription on "
        "one of Jack's topics and print each one's attributes and decoded "
        "jack.Job envelope. Talks to Pub/Sub, not to Jack (PUBSUB_EMULATOR_HOST "
        "and Google credentials apply as for any Google client). Without --ack "
        "the messages are handed back at once, so consumers still get them.",
    )
    sub.add_argument("subscription", metavar="SUBSCRIPTION",
                     help="a subscription name, or projects/P/subscriptions/S")
    sub.add_argument("--project", default=environ.get("PUBSUB_PROJECT", ""),
                     help="the Google Cloud project (default: $PUBSUB_PROJECT)")
    sub.add_argument("--max", type=int, default=10, metavar="N",
                     help="pull at most N messages, 1 to 1000 (default: %(default)s)")
    sub.add_argument("--wait", type=_positive_seconds, default=5.0, metavar="SECONDS",
                     help="wait this long for a first message (default: %(default)s)")
    sub.add_argument("--ack", action="store_true",
                     help="acknowledge what was pulled (it is not delivered again)")

    return parser


def parse_command(argv, stdin, environ=None):
    """
    Parse C{argv} and build the request the command sends.

    @return: C{(args, request)}.
    @raise SystemExit: with status 2 on a usage error (argparse prints it).
    """
    args = make_parser(environ).parse_args(argv)
    try:
        return args, args.build(args, stdin)
    except UsageError as e:
        args.parser.error(str(e))


def main(argv=None, stdin=None, stdout=None, stderr=None, environ=None):
    """
    Run jackctl and return its exit status.

    @param stdin: a binary stream (default: C{sys.stdin.buffer}).
    @param stdout: a text stream (default: C{sys.stdout}).
    @param stderr: a text stream (default: C{sys.stderr}).
    @param environ: the environment for defaults (default: C{os.environ}).
    """
    stdin = sys.stdin.buffer if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    try:
        # argparse writes usage errors and --help to sys.stderr / sys.stdout.
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args, request = parse_command(argv, stdin, environ)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    try:
        with grpc.insecure_channel(args.addr) as channel:
            output, status = args.call(channel, request, args)
    except grpc.RpcError as e:
        details = e.details()
        stderr.write(f"jackctl: {e.code().name}: {details}\n" if details
                     else f"jackctl: {e.code().name}\n")
        return 1
    except CommandFailed as e:
        stderr.write(f"jackctl: {e}\n")
        return 1
    if isinstance(output, str):
        stdout.write(output)
    else:
        stdout.write(json_format.MessageToJson(output, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
