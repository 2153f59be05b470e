import socket

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from jackd.tap import (
    SETTINGS,
    ConfigError,
    Options,
    build_service,
    check_port_free,
    makeService,
)

DEFAULTS = {
    "grpc-port": 50051,
    "gcs-bucket": "",
    "gcs-prefix": "",
    "queue-backend": "noop",
    "pubsub-project": "",
    "max-payload-bytes": 1048576,
    "max-bulk-jobs": 1000,
    "max-bulk-bytes": 10485760,
    "drain-delay": 0.0,
    "shutdown-grace": 30.0,
    "health-interval": 5.0,
}


def parsed_options(argv=(), environ=None):
    options = Options(environ=environ or {})
    options.parseOptions(list(argv))
    return options


def parse(argv=(), environ=None):
    return dict(parsed_options(argv, environ))


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """With no options and an empty environment every setting has its default."""
        self.assertEqual(parse(), DEFAULTS)

    def test_environment(self):
        """Each setting is read from the environment variable of its name."""
        environ = {
            "GRPC_PORT": "6000",
            "GCS_BUCKET": "b",
            "GCS_PREFIX": "jack/",
            "QUEUE_BACKEND": "pubsub",
            "PUBSUB_PROJECT": "p",
            "MAX_PAYLOAD_BYTES": "2KiB",
            "MAX_BULK_JOBS": "10",
            "MAX_BULK_BYTES": "1MB",
            "DRAIN_DELAY": "500ms",
            "SHUTDOWN_GRACE": "1m",
            "HEALTH_INTERVAL": "2s",
        }
        self.assertEqual(
            parse(environ=environ),
            {
                "grpc-port": 6000,
                "gcs-bucket": "b",
                "gcs-prefix": "jack/",
                "queue-backend": "pubsub",
                "pubsub-project": "p",
                "max-payload-bytes": 2048,
                "max-bulk-jobs": 10,
                "max-bulk-bytes": 1000000,
                "drain-delay": 0.5,
                "shutdown-grace": 60.0,
                "health-interval": 2.0,
            },
        )

    def test_option_beats_environment(self):
        """A command-line option wins over the environment variable."""
        options = parse(
            ["--grpc-port", "7000", "--drain-delay", "2s"],
            {"GRPC_PORT": "6000", "DRAIN_DELAY": "30s", "MAX_BULK_JOBS": "5"},
        )
        self.assertEqual(
            options, dict(DEFAULTS, **{"grpc-port": 7000, "drain-delay": 2.0, "max-bulk-jobs": 5})
        )

    def test_empty_environment_variable(self):
        """An environment variable set to the empty string counts as unset."""
        self.assertEqual(parse(environ={"GRPC_PORT": "", "QUEUE_BACKEND": ""}), DEFAULTS)

    def test_bad_values(self):
        """A bad value is a usage error naming where it came from."""
        cases = [
            (["--grpc-port", "70000"], {}, "--grpc-port"),
            (["--grpc-port", "http"], {}, "--grpc-port: 'http' is not a TCP port (0 to 65535)"),
            (["--grpc-port", "-1"], {}, "--grpc-port: '-1' is not a TCP port"),
            ([], {"MAX_BULK_JOBS": "many"}, "MAX_BULK_JOBS: 'many' is not a whole number"),
            ([], {"QUEUE_BACKEND": "kafka"}, "QUEUE_BACKEND: 'kafka' is not one of: noop, pubsub"),
            ([], {"DRAIN_DELAY": "soon"}, "DRAIN_DELAY: 'soon' is not a duration"),
            (["--max-bulk-jobs", "0"], {}, "--max-bulk-jobs: '0' must be at least 1"),
            (["--max-payload-bytes", "1.5MiB"], {}, "--max-payload-bytes"),
            (["--max-bulk-bytes", "0"], {}, "--max-bulk-bytes"),
            (["--health-interval", "0s"], {}, "--health-interval: '0s' must be longer than 0s"),
            (["--max-bulk-bytes", "2GiB"], {},
             "requests of up to 2147549184 bytes would need a gRPC receive limit over "
             "gRPC's maximum of 2147483647 bytes"),
        ]
        for argv, environ, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(argv, environ)
            self.assertIn(message, str(caught.exception))

    def test_help_lists_every_setting(self):
        """--help names every option with its environment variable and default."""
        text = str(Options(environ={}))
        for setting in SETTINGS:
            self.assertIn(f"--{setting.option}=", text)
            self.assertIn(f"[env {setting.env}; default: {setting.default or 'unset'}]",
                          " ".join(text.split()))


class BuildServiceTests(SynchronousTestCase):
    def build(self, argv=(), environ=None):
        from twisted.internet import reactor

        return build_service(parsed_options(argv, environ), reactor)

    def test_tree(self):
        """The root holds storage, backend, scheduler, grpc and health, in start order."""
        root = self.build(["--grpc-port", "0"])
        self.assertEqual(
            [child.name for child in root], ["storage", "backend", "scheduler", "grpc", "health"]
        )

    def test_backend_not_built(self):
        """Asking for the Pub/Sub backend (not built yet) is a ConfigError naming it."""
        error = self.assertRaises(
            ConfigError, self.build, ["--grpc-port", "0", "--queue-backend", "pubsub"]
        )
        self.assertEqual(
            str(error),
            "queue backend (QUEUE_BACKEND, --queue-backend) 'pubsub' is not in "
            "this version of Jack yet (available: noop)",
        )

    def test_storage_not_built(self):
        """Setting GCS_BUCKET (GCS storage is not built yet) is a ConfigError."""
        error = self.assertRaises(ConfigError, self.build, [], {"GCS_BUCKET": "jack-config"})
        self.assertEqual(
            str(error),
            "config storage (GCS_BUCKET, --gcs-bucket) 'gcs' is not in this "
            "version of Jack yet (available: memory)",
        )

    def test_make_service_exits_with_one_line(self):
        """makeService turns a ConfigError into SystemExit with one line."""
        options = parsed_options(["--queue-backend", "pubsub"])
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        message = str(caught.exception.code)
        self.assertTrue(message.startswith("twistd jack: queue backend (QUEUE_BACKEND"))
        self.assertNotIn("\n", message)


class PortTests(SynchronousTestCase):
    def test_port_in_use(self):
        """A port something listens on is a ConfigError that says so."""
        with socket.socket() as listener:
            listener.bind(("", 0))
            listener.listen()
            port = listener.getsockname()[1]
            error = self.assertRaises(ConfigError, check_port_free, port)
        self.assertEqual(str(error), f"cannot listen on port {port}: already in use")

    def test_port_free(self):
        """A free port passes, and port 0 (any port) is never checked."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        check_port_free(port)
        check_port_free(0)
