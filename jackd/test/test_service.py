"""
L{jackd.service.JackService}: children start one after another, each
waiting for the one before; a child that cannot start stops the start.
"""

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from jackd.errors import ConfigError
from jackd.service import JackService


class Child(Service):
    description = "a child"

    def __init__(self, name, events, start=None):
        self.setName(name)
        self.events = events
        self.start = start
        self.store = self  # the root logs scheduler.store.description

    def startService(self):
        super().startService()
        self.events.append(f"start {self.name}")
        return self.start

    def stopService(self):
        super().stopService()
        self.events.append(f"stop {self.name}")


def tree(starts, on_start_failure=None):
    events = []
    root = JackService(on_start_failure=on_start_failure)
    for name in ("storage", "backend", "scheduler", "grpc", "health"):
        Child(name, events, starts.get(name)).setServiceParent(root)
    return root, events


class StartTests(SynchronousTestCase):
    def test_waits_for_each_child(self):
        """
        A child whose C{startService} returns a Deferred holds the next
        children until it fires; C{ready} then fires with C{True}.
        """
        loading = Deferred()
        root, events = tree({"backend": loading})
        root.startService()
        self.assertEqual(events, ["start storage", "start backend"])
        self.assertNoResult(root.ready)
        loading.callback(None)
        self.assertEqual(
            events,
            ["start storage", "start backend", "start scheduler", "start grpc", "start health"],
        )
        self.assertIs(self.successResultOf(root.ready), True)

    def test_config_error_stops_start(self):
        """
        A child failing with ``ConfigError`` stops the start: later children
        never start, the failure callback gets the error, C{ready} fires
        with C{False}, and stopping stops only what started.
        """
        failures = []
        problem = ConfigError("topic jack-high does not exist")
        root, events = tree({"backend": fail(problem)}, failures.append)
        root.startService()
        self.assertEqual(events, ["start storage", "start backend"])
        self.assertEqual(failures, [problem])
        self.assertIs(self.successResultOf(root.ready), False)
        self.assertEqual(self.flushLoggedErrors(), [])  # one line, no traceback
        root.stopService()
        self.assertEqual(events[2:], ["stop backend", "stop storage"])

    def test_bug_stops_start(self):
        """Any other exception stops the start too, logged with its traceback."""
        failures = []
        root, events = tree({"storage": fail(ZeroDivisionError())}, failures.append)
        root.startService()
        self.assertEqual(events, ["start storage"])
        self.assertEqual(len(failures), 1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_stopped_while_starting(self):
        """
        A child whose start fails because Jack was stopped meanwhile (SIGTERM
        during start-up) is no start failure: nothing critical is logged and
        the failure callback is not called.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, globalLogPublisher

        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        failures = []
        checking = Deferred()
        root, events = tree({"backend": checking}, failures.append)
        root.startService()
        root.stopService()
        checking.errback(ConfigError("cannot reach Pub/Sub: channel closed"))
        self.assertEqual(failures, [])
        self.assertIs(self.successResultOf(root.ready), False)
        self.assertEqual([e for e in observer if e["log_level"] == LogLevel.critical], [])
        self.assertNotIn("start scheduler", events)
