"""
``twistd jack``: its options and the service tree it runs.

Every setting is a command-line option and an environment variable of the
same name (``--grpc-port`` / ``GRPC_PORT``); the option beats the
environment, which beats the default.
"""

import errno
import os
import re
import socket
import sys
import textwrap
from dataclasses import dataclass
from functools import partial
from typing import Callable

from twisted.python import reflect, usage

from jackd.errors import ConfigError
from jackd.units import parse_duration, parse_size


# gRPC's channel arguments are C ints.
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1


def _port(text):
    if not text.isdigit() or int(text) > 65535:
        raise ValueError(f"{text!r} is not a TCP port (0 to 65535)")
    return int(text)


def _positive_int(text):
    if not text.strip().isdigit():
        raise ValueError(f"{text!r} is not a whole number")
    value = int(text)
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def _positive_size(text):
    value = parse_size(text)
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1 byte")
    return value


def _positive_duration(text):
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be longer than 0s")
    return value


def _boolean(text):
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not true or false")


def _topic_name(text):
    # Pub/Sub's rule for topic ids.
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}", text) or text.startswith("goog"):
        raise ValueError(
            f"{text!r} is not a Pub/Sub topic name (3 to 255 letters, digits and "
            "- _ . ~ + %, starting with a letter, not with 'goog')"
        )
    return text


# run_at is kept as int64 nanoseconds since 1970 (up to the year 2262).
MAX_SCHEDULE_AHEAD_DAYS = 36500


def _schedule_ahead(text):
    value = _positive_duration(text)
    if value > MAX_SCHEDULE_AHEAD_DAYS * 86400:
        raise ValueError(f"{text!r} is over {MAX_SCHEDULE_AHEAD_DAYS}d")
    return value


def _one_of(*choices):
    def convert(text):
        if text not in choices:
            raise ValueError(f"{text!r} is not one of: {', '.join(choices)}")
        return text

    return convert


def _optional_port(text):
    return _port(text) if text else None


def _ip_address(text):
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address (such as 127.0.0.1 or ::1)") from None


@dataclass(frozen=True)
class Setting:
    option: str
    env: str
    default: str
    convert: Callable
    help: str


SETTINGS = (
    Setting("grpc-port", "GRPC_PORT", "50051", _port,
            "TCP port of the gRPC APIs, reflection and health, on all interfaces."),
    Setting("grpc-threads", "GRPC_THREADS", "64", _positive_int,
            "gRPC threads: the most calls Jack works on at once (more wait "
            "for a thread). A call holds its thread until it is answered, so "
            "Enqueue's calls/s are at most GRPC_THREADS divided by the time "
            "one takes (with Pub/Sub: PUBSUB_BATCH_LATENCY and a round trip)."),
    Setting("grpc-max-calls", "GRPC_MAX_CALLS", "1000", _positive_int,
            "Most calls Jack holds at once, working or waiting for one of "
            "GRPC_THREADS; more are refused at once with RESOURCE_EXHAUSTED, so "
            "an overloaded Jack sheds calls instead of queueing them without end."),
    Setting("gcs-bucket", "GCS_BUCKET", "", str,
            "Google Cloud Storage bucket for producers and job types (its name "
            "alone, no gs://); unset keeps them in memory."),
    Setting("gcs-prefix", "GCS_PREFIX", "", str,
            "Folder inside GCS_BUCKET for Jack's objects (a trailing / is added); "
            "unset: the bucket's root."),
    Setting("gcs-refresh-interval", "GCS_REFRESH_INTERVAL", "10s", _positive_duration,
            "How often Jack re-reads GCS_BUCKET for producers and job types that "
            "other replicas created (lookups of unknown ones ask GCS at once)."),
    Setting("gcs-negative-ttl", "GCS_NEGATIVE_TTL", "2s", parse_duration,
            "How long Jack answers NOT_FOUND for a producer or job type GCS "
            "did not have, without asking GCS again (0s: always ask)."),
    Setting("gcs-timeout", "GCS_TIMEOUT", "5s", _positive_duration,
            "How long one admin call, lookup or health check may wait on GCS in "
            "all (every request and retry, and its wait for a free connection) "
            "before it answers UNAVAILABLE; a refresh, and the start, give up "
            "when GCS makes no progress for this long."),
    Setting("queue-backend", "QUEUE_BACKEND", "noop", _one_of("noop", "pubsub"),
            "Where accepted jobs go: noop (log them, deliver nothing) or pubsub."),
    Setting("pubsub-project", "PUBSUB_PROJECT", "", str,
            "Google Cloud project of the Pub/Sub topics (required with "
            "QUEUE_BACKEND=pubsub)."),
    *(
        Setting(f"pubsub-topic-{queue}", f"PUBSUB_TOPIC_{queue.upper()}",
                f"jack-{queue}", _topic_name, f"Pub/Sub topic of the {queue} queue.")
        for queue in ("immediate", "high", "medium", "low")
    ),
    Setting("pubsub-create-topics", "PUBSUB_CREATE_TOPICS", "false", _boolean,
            "Create missing Pub/Sub topics at start (emulators, first runs); "
            "otherwise a missing topic stops the start."),
    Setting("pubsub-publish-timeout", "PUBSUB_PUBLISH_TIMEOUT", "10s", _positive_duration,
            "How long Enqueue waits for Pub/Sub to confirm a job before "
            "answering UNAVAILABLE (retries of a failed publish stop then too)."),
    Setting("pubsub-max-outstanding", "PUBSUB_MAX_OUTSTANDING", "10000", _positive_int,
            "Most jobs waiting for Pub/Sub at once; more get RESOURCE_EXHAUSTED."),
    Setting("pubsub-max-outstanding-bytes", "PUBSUB_MAX_OUTSTANDING_BYTES", "100MiB",
            _positive_size, "Most message bytes waiting for Pub/Sub at once."),
    Setting("pubsub-batch-latency", "PUBSUB_BATCH_LATENCY", "10ms", parse_duration,
            "How long an Enqueue waits for others to the same Pub/Sub topic, to "
            "publish them in one request (EnqueueBulk's jobs go at once)."),
    Setting("max-payload-bytes", "MAX_PAYLOAD_BYTES", "1MiB", _positive_size,
            "Largest job payload (bytes, or with a unit: KiB, MiB, GiB, KB, MB, GB)."),
    Setting("max-bulk-jobs", "MAX_BULK_JOBS", "1000", _positive_int,
            "Most jobs in one EnqueueBulk call."),
    Setting("max-bulk-bytes", "MAX_BULK_BYTES", "10MiB", _positive_size,
            "Largest EnqueueBulk request, as encoded on the wire."),
    Setting("drain-delay", "DRAIN_DELAY", "0s", parse_duration,
            "At shutdown, how long health answers NOT_SERVING before Jack "
            "stops taking calls (durations: 500ms, 30s, 5m, 2h, 30d)."),
    Setting("shutdown-grace", "SHUTDOWN_GRACE", "30s", parse_duration,
            "At shutdown, how long calls in flight may take to finish."),
    Setting("health-interval", "HEALTH_INTERVAL", "5s", _positive_duration,
            "How often health re-checks the queue backend and config storage."),
    Setting("schedule-store", "SCHEDULE_STORE", "memory",
            _one_of("memory", "sqlite", "postgres"),
            "Where jobs with a future run_at wait: memory (lost when Jack "
            "stops), sqlite (a file; one Jack) or postgres (shared by replicas)."),
    Setting("schedule-db", "SCHEDULE_DB", "", str,
            "The SQLite file (sqlite) or the PostgreSQL connection string "
            "(postgres) of SCHEDULE_STORE."),
    Setting("max-schedule-ahead", "MAX_SCHEDULE_AHEAD", "30d", _schedule_ahead,
            "Furthest in the future a run_at may be; later is INVALID_ARGUMENT."),
    Setting("schedule-batch-size", "SCHEDULE_BATCH_SIZE", "100", _positive_int,
            "Most due scheduled jobs claimed and published at once."),
    Setting("schedule-lease", "SCHEDULE_LEASE", "60s", _positive_duration,
            "How long a replica's claim on due jobs lasts: if it dies while "
            "publishing them, another publishes them after this. With "
            "QUEUE_BACKEND=pubsub it must be longer than "
            "PUBSUB_PUBLISH_TIMEOUT + PUBSUB_BATCH_LATENCY + SCHEDULE_DB_TIMEOUT."),
    Setting("schedule-db-timeout", "SCHEDULE_DB_TIMEOUT", "10s", _positive_duration,
            "How long one operation on the schedule database may take before "
            "it fails (UNAVAILABLE); with postgres also the statement_timeout, "
            "lock_timeout and tcp_user_timeout unless SCHEDULE_DB sets them; "
            "with sqlite how long a write waits for the file's lock."),
    Setting("schedule-poll-interval", "SCHEDULE_POLL_INTERVAL", "1s", _positive_duration,
            "How often the scheduler looks in the store for jobs it has no "
            "timer for (scheduled by another replica, or left by one that died)."),
    Setting("schedule-stats-interval", "SCHEDULE_STATS_INTERVAL", "60s", _positive_duration,
            "How often Jack logs how many scheduled jobs it holds and how late "
            "the oldest due one is."),
    Setting("manhole-port", "MANHOLE_PORT", "", _optional_port,
            "TCP port of the SSH manhole, a Python prompt inside Jack for "
            "operators (key login only; not GRPC_PORT); unset: no manhole."),
    Setting("manhole-interface", "MANHOLE_INTERFACE", "127.0.0.1", _ip_address,
            "Address the SSH manhole listens on (an address of this machine)."),
    Setting("manhole-authorized-keys", "MANHOLE_AUTHORIZED_KEYS", "", str,
            "OpenSSH authorized_keys file of the public keys (Ed25519, ECDSA, "
            "RSA) the manhole accepts (required with MANHOLE_PORT; read at "
            "each login; refused when group or others can write it)."),
    Setting("manhole-host-key", "MANHOLE_HOST_KEY", "", str,
            "File of the manhole's SSH host key (OpenSSH private key), "
            "written with a new Ed25519 key when missing (refused when group "
            "or others can write it); unset: a new key each start, its "
            "fingerprint logged."),
)


def _help(setting):
    return f"{setting.help} [env {setting.env}; default: {setting.default or 'unset'}]"


class SettingsOptions(usage.Options):
    """
    twistd options made from a table of L{Setting}s (C{settings}, set by
    each subclass): every one an option and an environment variable, the
    option winning over the variable, which wins over the default.

    @param environ: the environment to read defaults from (C{os.environ}).
    """

    synopsis = "[options]"
    settings = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.optParameters = [[s.option, None, None, _help(s)] for s in cls.settings]

    def __init__(self, environ=None):
        super().__init__()
        self._environ = os.environ if environ is None else environ

    def getUsage(self, width=None):
        """
        Twisted's usage text, with the options block laid out here: its
        wrapping breaks words at hyphens ("jack- medium"), which would
        garble topic names and defaults.
        """
        text = super().getUsage(width)
        head, _, rest = text.partition("Options:\n")
        _, _, tail = rest.partition("\n\n")
        lines = ["Options:"]
        flags = [("help", "Display this help and exit."),
                 ("version", "Display Twisted version and exit.")]
        entries = [(f"--{s.option}=", _help(s)) for s in self.settings]
        entries += [(f"--{name}", doc) for name, doc in flags]
        for name, doc in sorted(entries):
            wrapped = textwrap.wrap(doc, 72, break_on_hyphens=False, break_long_words=False)
            lines.append(f"  {name}")
            lines.extend(f"        {line}" for line in wrapped)
        return head + "\n".join(lines) + "\n\n" + tail

    def postOptions(self):
        for setting in self.settings:
            text, source = self[setting.option], f"--{setting.option}"
            if text is None:
                text, source = self._environ.get(setting.env, ""), setting.env
                if not text:
                    text, source = setting.default, f"default of {setting.env}"
            try:
                self[setting.option] = setting.convert(text)
            except ValueError as error:
                raise usage.UsageError(f"{source}: {error}") from None


class Options(SettingsOptions):
    """
    ``twistd jack``'s options.

    @param environ: the environment to read defaults from (C{os.environ}).
    """

    settings = SETTINGS
    longdesc = (
        "Jack: the gRPC front door for background jobs.  Every option can also "
        "be set with the environment variable named in its help; the option "
        "wins over the variable."
    )

    def postOptions(self):
        super().postOptions()
        receive = self.limits().grpc_receive_bytes()
        if receive > MAX_GRPC_MESSAGE_BYTES:
            raise usage.UsageError(
                f"MAX_BULK_BYTES / MAX_PAYLOAD_BYTES: requests of up to {receive} "
                f"bytes would need a gRPC receive limit over gRPC's maximum of "
                f"{MAX_GRPC_MESSAGE_BYTES} bytes; lower them"
            )

    def limits(self):
        from jackd.validation import Limits

        return Limits(
            max_payload_bytes=self["max-payload-bytes"],
            max_bulk_jobs=self["max-bulk-jobs"],
            max_bulk_bytes=self["max-bulk-bytes"],
            max_schedule_ahead=self["max-schedule-ahead"],
        )


# Implementations by name: each a function (options, reactor) -> service,
# imported only when chosen (so QUEUE_BACKEND=noop never imports a broker's
# client).
STORES = {
    "memory": "jackd.storage.memory.from_options",
    "gcs": "jackd.storage.gcs.from_options",
}
SCHEDULE_STORES = {
    "memory": "jackd.scheduler.memory.from_options",
    "sqlite": "jackd.scheduler.sqlite.SQLiteScheduleStore.from_options",
    "postgres": "jackd.scheduler.postgres.PostgresScheduleStore.from_options",
}
BACKENDS = {
    "noop": "jackd.backends.noop.from_options",
    "pubsub": "jackd.backends.pubsub.from_options",
}


def _build(table, name, options, reactor):
    return reflect.namedAny(table[name])(options, reactor)


def install_reactor():
    """
    Install Twisted's asyncio reactor (the PostgreSQL schedule store's driver
    runs on its loop) unless it is installed already, and return it.

    @raise ConfigError: another reactor is installed.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        raise ConfigError(
            f"Jack runs on Twisted's asyncio reactor, but {type(reactor).__name__} "
            "is installed: run twistd without -r (or with -r asyncio)"
        )
    return reactor


def check_port_free(port: int, interface: str | None = None) -> None:
    """
    @param interface: the IP address to be listened on; C{None}: every one.
    @raise ConfigError: something already listens on C{port}, or
        C{interface} is not an address of this machine.
    """
    if interface is not None:
        _check_bind(port, interface)
        return
    if port == 0:
        return
    family, host = (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "")
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        host = ""
    with probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            reason = "already in use" if error.errno == errno.EADDRINUSE else error.strerror
            raise ConfigError(f"cannot listen on port {port}: {reason}") from None


def _check_bind(port, interface):
    """Bind C{interface}:C{port} for a moment, as the service will (port 0 too)."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    try:
        probe = socket.socket(family, socket.SOCK_STREAM)
    except OSError as error:
        raise ConfigError(f"cannot listen on {interface}: {error.strerror}") from None
    with probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as error:
            reason = {
                errno.EADDRINUSE: "already in use",
                errno.EADDRNOTAVAIL: "not an address of this machine",
            }.get(error.errno, error.strerror)
            raise ConfigError(f"cannot listen on {interface} port {port}: {reason}") from None


def build_service(options, reactor, store=None, backend=None, on_start_failure=None):
    """
    The service tree for parsed C{options}.

    @param store: an ``IConfigStore`` to use instead of the configured one.
    @param backend: an ``IQueueBackend`` to use instead of the configured one.
    @param on_start_failure: see ``JackService``.
    @raise ConfigError: the configuration cannot work.
    """
    from collections import Counter

    from jackd.admin import Admin
    from jackd.api import admin as admin_api
    from jackd.api import jobs as jobs_api
    from jackd.api.health import HealthService
    from jackd.api.server import GrpcServer
    from jackd.enqueue import Enqueuer
    from jackd.scheduler import Scheduler, check_options
    from jackd.service import JackService
    if store is None:
        kind = "gcs" if options["gcs-bucket"] else "memory"
        store = _build(STORES, kind, options, reactor)
    if backend is None:
        name = options["queue-backend"]
        backend = _build(BACKENDS, name, options, reactor)
    check_port_free(options["grpc-port"])

    limits = options.limits()
    job_counts = Counter()  # each job's outcome by status code, for stats()
    check_options(options)
    scheduler = Scheduler(
        _build(SCHEDULE_STORES, options["schedule-store"], options, reactor),
        backend,
        reactor,
        batch_size=options["schedule-batch-size"],
        lease=options["schedule-lease"],
        poll_interval=options["schedule-poll-interval"],
        stats_interval=options["schedule-stats-interval"],
    )
    enqueuer = Enqueuer(store, backend, scheduler, limits, reactor)
    health = HealthService(
        backend, store, reactor, options["health-interval"], options["drain-delay"]
    )
    server = GrpcServer(
        options["grpc-port"],
        [
            partial(jobs_api.register, enqueuer=enqueuer, counts=job_counts),
            partial(admin_api.register, admin=Admin(store, reactor)),
            health.register,
        ],
        grace=options["shutdown-grace"],
        max_receive_bytes=limits.grpc_receive_bytes(),
        threads=options["grpc-threads"],
        max_calls=options["grpc-max-calls"],
        reactor=reactor,
    )
    root = JackService(on_start_failure=on_start_failure)
    for name, child in [
        ("storage", store),
        ("backend", backend),
        ("scheduler", scheduler),
        ("grpc", server),
        ("health", health),
    ]:
        child.setName(name)
        child.setServiceParent(root)
    if options["manhole-port"] is not None:
        from jackd.manhole import build_manhole

        manhole = build_manhole(options, reactor, root, job_counts)
        manhole.setName("manhole")
        manhole.setServiceParent(root)
    return root


def makeService(options, reactor=None):
    """
    twistd's entry point: install the asyncio reactor and build the tree.
    A configuration that cannot work stops the start with one line.
    """
    try:
        reactor = reactor or install_reactor()
        return build_service(
            options, reactor, on_start_failure=partial(_exit_after_stop, reactor)
        )
    except ConfigError as error:
        raise SystemExit(f"twistd jack: {error}") from None


def _exit_after_stop(reactor, error):
    """
    A child could not start (the log says why): stop what did start, and
    make the process exit with status 1 once twistd has cleaned up (its pid
    file included), so a supervisor sees the failure.  twistd itself has no
    exit status of its own to set, hence the exit at interpreter shutdown.
    """
    import atexit

    def exit_1():
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(1)

    atexit.register(exit_1)
    # Start-up runs before the reactor does; stop it once it runs.
    reactor.callWhenRunning(reactor.stop)
