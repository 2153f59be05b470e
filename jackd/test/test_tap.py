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
    "pubsub-topic-immediate": "jack-immediate",
    "pubsub-topic-high": "jack-high",
    "pubsub-topic-medium": "jack-medium",
    "pubsub-topic-low": "jack-low",
    "pubsub-create-topics": False,
    "pubsub-publish-timeout": 10.0,
    "pubsub-max-outstanding": 10000,
    "pubsub-max-outstanding-bytes": 100 * 1024 * 1024,
    "pubsub-batch-latency": 0.01,
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


def parse(argv=(), environ=None, keys=DEFAULTS):
    """
    The parsed settings named in C{keys} (settings other tests own are
    checked there, so adding one does not touch every test here).
    """
    options = parsed_options(argv, environ)
    return {key: options[key] for key in keys}


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """With no options and an empty environment every setting has its default."""
        self.assertEqual(parse(), DEFAULTS)

    def test_every_setting_parsed(self):
        """Every setting is an option of its own, and its default parses."""
        self.assertEqual(
            set(parsed_options()), {setting.option for setting in SETTINGS}
        )

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
            "PUBSUB_TOPIC_IMMEDIATE": "now-jobs",
            "PUBSUB_CREATE_TOPICS": "true",
            "PUBSUB_PUBLISH_TIMEOUT": "3s",
            "PUBSUB_MAX_OUTSTANDING": "50",
            "PUBSUB_MAX_OUTSTANDING_BYTES": "1KiB",
            "PUBSUB_BATCH_LATENCY": "250ms",
        }
        expected = {
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
            "pubsub-topic-immediate": "now-jobs",
            "pubsub-create-topics": True,
            "pubsub-publish-timeout": 3.0,
            "pubsub-max-outstanding": 50,
            "pubsub-max-outstanding-bytes": 1024,
            "pubsub-batch-latency": 0.25,
        }
        self.assertEqual(parse(environ=environ, keys=expected), expected)

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

    def test_pubsub_needs_project(self):
        """QUEUE_BACKEND=pubsub without PUBSUB_PROJECT is a ConfigError naming it."""
        error = self.assertRaises(
            ConfigError, self.build, ["--grpc-port", "0", "--queue-backend", "pubsub"]
        )
        self.assertEqual(
            str(error),
            "QUEUE_BACKEND=pubsub needs PUBSUB_PROJECT (--pubsub-project): the "
            "Google Cloud project of the topics",
        )

    def test_pubsub_backend(self):
        """
        QUEUE_BACKEND=pubsub builds the Pub/Sub backend with the topics the
        options name (the defaults where none is named).
        """
        from jackd.backends.pubsub import PubSubBackend

        root = self.build(
            ["--grpc-port", "0", "--pubsub-project", "proj", "--pubsub-topic-high", "urgent"],
            {"QUEUE_BACKEND": "pubsub"},
        )
        backend = root.getServiceNamed("backend")
        self.assertIsInstance(backend, PubSubBackend)
        self.assertEqual(
            sorted(backend.topics.values()),
            [
                "projects/proj/topics/jack-immediate",
                "projects/proj/topics/jack-low",
                "projects/proj/topics/jack-medium",
                "projects/proj/topics/urgent",
            ],
        )

    def test_pubsub_batch_latency_under_timeout(self):
        """
        A batch latency over half the publish timeout is a ConfigError: jobs
        would time out waiting for their batch and be delivered anyway.
        """
        error = self.assertRaises(
            ConfigError, self.build,
            ["--grpc-port", "0", "--queue-backend", "pubsub", "--pubsub-project", "p",
             "--pubsub-batch-latency", "1h", "--pubsub-publish-timeout", "1s"],
        )
        self.assertIn("PUBSUB_BATCH_LATENCY (3600s) must be at most half of "
                      "PUBSUB_PUBLISH_TIMEOUT (1s)", str(error))

    def test_bad_topic_name(self):
        """A topic name Pub/Sub would refuse is a usage error naming the option."""
        for name in ("ab", "1abc", "goog-jobs", "with space", "a" * 256):
            error = self.assertRaises(
                usage.UsageError, parsed_options, ["--pubsub-topic-low", name]
            )
            self.assertIn("--pubsub-topic-low", str(error))
            self.assertIn("is not a Pub/Sub topic name", str(error))

    def test_boolean(self):
        """PUBSUB_CREATE_TOPICS reads the usual spellings of true and false."""
        for text, value in [("true", True), ("1", True), ("YES", True), ("off", False),
                            ("false", False), ("0", False)]:
            options = parsed_options([], {"PUBSUB_CREATE_TOPICS": text})
            self.assertIs(options["pubsub-create-topics"], value)
        self.assertRaises(usage.UsageError, parsed_options, [], {"PUBSUB_CREATE_TOPICS": "maybe"})

    def test_storage(self):
        """
        Without GCS_BUCKET the config storage is in memory; with it, GCS,
        configured by the GCS settings (connecting only when it starts).
        """
        from jackd.storage.gcs import GCSConfigStore
        from jackd.storage.memory import MemoryConfigStore

        root = self.build(["--grpc-port", "0"])
        self.assertIsInstance(root.getServiceNamed("storage"), MemoryConfigStore)
        root = self.build(
            ["--grpc-port", "0", "--gcs-prefix", "team/jack", "--gcs-timeout", "2s"],
            {"GCS_BUCKET": "jack-config", "GCS_REFRESH_INTERVAL": "1m"},
        )
        store = root.getServiceNamed("storage")
        self.assertIsInstance(store, GCSConfigStore)
        self.assertEqual(
            (store.bucket, store.prefix, store._refresh_interval, store._timeout),
            ("jack-config", "team/jack/", 60.0, 2.0),
        )

    def test_gcs_settings(self):
        """The GCS settings' defaults, and values from the environment."""
        keys = ["gcs-refresh-interval", "gcs-negative-ttl", "gcs-timeout"]
        self.assertEqual(parse(keys=keys), {
            "gcs-refresh-interval": 10.0, "gcs-negative-ttl": 2.0, "gcs-timeout": 5.0,
        })
        environ = {
            "GCS_REFRESH_INTERVAL": "30s", "GCS_NEGATIVE_TTL": "0s", "GCS_TIMEOUT": "1500ms",
        }
        self.assertEqual(parse(environ=environ, keys=keys), {
            "gcs-refresh-interval": 30.0, "gcs-negative-ttl": 0.0, "gcs-timeout": 1.5,
        })
        for name in ("GCS_REFRESH_INTERVAL", "GCS_TIMEOUT"):
            with self.assertRaises(usage.UsageError) as caught:
                parse(environ={name: "0s"})
            self.assertIn(f"{name}: '0s' must be longer than 0s", str(caught.exception))

    def test_gcs_prefix_too_long(self):
        """A GCS_PREFIX that leaves too little room for Jack's keys is a ConfigError."""
        error = self.assertRaises(
            ConfigError, self.build, ["--grpc-port", "0"],
            {"GCS_BUCKET": "b", "GCS_PREFIX": "p" * 250},
        )
        self.assertEqual(str(error), "GCS_PREFIX is 251 bytes long; at most 200 are allowed")

    def test_make_service_exits_with_one_line(self):
        """makeService turns a ConfigError into SystemExit with one line."""
        options = parsed_options(["--queue-backend", "pubsub"])
        with self.assertRaises(SystemExit) as caught:
            makeService(options)
        message = str(caught.exception.code)
        self.assertTrue(message.startswith("twistd jack: QUEUE_BACKEND=pubsub needs"))
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
