"""
L{jackd.api.edge.ReactorHop}: how gRPC's handler threads reach Jack's
Deferred-based code on the reactor thread.
"""

import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.python import threadable
from twisted.trial.unittest import TestCase

from jackd.api.edge import ReactorHop, ShuttingDown


class CountingReactor:
    """The real reactor, counting the wake-ups asked of it from threads."""

    def __init__(self):
        self.wakeups = 0

    def callFromThread(self, f, *args):
        self.wakeups += 1
        reactor.callFromThread(f, *args)


def in_threads(count, function):
    """Run C{function(i)} in C{count} new threads; a Deferred of their results."""
    results = [None] * count
    threads = []
    for i in range(count):
        def run(i=i):
            try:
                results[i] = ("ok", function(i))
            except BaseException as error:
                results[i] = ("error", error)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)

    def join():
        for thread in threads:
            thread.join(10)
            if thread.is_alive():
                raise AssertionError("a calling thread never got its answer")
        return results

    return deferToThread(join)


class ReactorHopTests(TestCase):
    timeout = 20

    def setUp(self):
        self.reactor = CountingReactor()
        self.hop = ReactorHop(self.reactor)
        self.addCleanup(self.hop.close)

    @inlineCallbacks
    def test_runs_on_the_reactor_thread(self):
        """The function runs on the reactor thread; its value comes back."""
        def where(i):
            return succeed((i, threadable.isInIOThread()))

        results = yield in_threads(3, lambda i: self.hop.call(where, i))
        self.assertEqual(results, [("ok", (i, True)) for i in range(3)])

    @inlineCallbacks
    def test_waits_for_the_deferred(self):
        """A Deferred that fires later answers the thread when it fires."""
        pending = Deferred()
        results = in_threads(1, lambda i: self.hop.call(lambda: pending))
        while not self.reactor.wakeups:
            yield deferToThread(time.sleep, 0.01)
        yield deferToThread(time.sleep, 0.1)
        self.assertFalse(results.called)
        pending.callback("later")
        self.assertEqual((yield results), [("ok", "later")])

    @inlineCallbacks
    def test_failure_raises_in_the_thread(self):
        """A failed Deferred, or an exception raised, raises in the calling thread."""
        def failing(i):
            if i:
                return fail(KeyError("failed"))
            raise ValueError("raised")

        results = yield in_threads(2, lambda i: self.hop.call(failing, i))
        self.assertEqual([type(error) for _, error in results], [ValueError, KeyError])
        self.assertEqual({kind for kind, _ in results}, {"error"})

    @inlineCallbacks
    def test_one_wakeup_per_batch(self):
        """
        Calls queued while the reactor is busy wake it once, not once each:
        the reactor thread is held here until all of them are queued.
        """
        started = in_threads(20, lambda i: self.hop.call(succeed, i))
        deadline = time.monotonic() + 10
        while len(self.hop._queued) < 20 and time.monotonic() < deadline:
            time.sleep(0.001)  # holds the reactor thread on purpose
        self.assertEqual(len(self.hop._queued), 20)
        results = yield started
        self.assertEqual(results, [("ok", i) for i in range(20)])
        self.assertEqual(self.reactor.wakeups, 1)

    @inlineCallbacks
    def test_close_answers_waiting_calls(self):
        """
        close() answers a call whose Deferred has not fired with
        ShuttingDown; the Deferred firing later changes nothing, and calls
        after close() are refused at once.
        """
        pending = Deferred()
        results = in_threads(1, lambda i: self.hop.call(lambda: pending))
        while not self.reactor.wakeups:
            yield deferToThread(time.sleep, 0.01)
        yield deferToThread(time.sleep, 0.05)
        self.hop.close()
        [(kind, error)] = yield results
        self.assertEqual((kind, type(error)), ("error", ShuttingDown))
        pending.callback("too late")
        [(kind, error)] = yield in_threads(1, lambda i: self.hop.call(succeed, i))
        self.assertEqual((kind, type(error)), ("error", ShuttingDown))

    @inlineCallbacks
    def test_close_drops_queued_calls(self):
        """
        A call still queued for the reactor when close() runs is answered
        ShuttingDown and never runs (its caller was told to retry).
        """
        ran = []
        results = in_threads(1, lambda i: self.hop.call(ran.append, i))
        deadline = time.monotonic() + 10
        while len(self.hop._queued) < 1 and time.monotonic() < deadline:
            time.sleep(0.001)  # holds the reactor thread on purpose
        self.hop.close()
        [(kind, error)] = yield results
        self.assertEqual((kind, type(error)), ("error", ShuttingDown))
        yield deferToThread(time.sleep, 0.05)
        self.assertEqual(ran, [])
