"""
What every conformance mixin (``*_mixin.py``) does the same way: build the
implementation under test in C{setUp} through the subclass's hook.
"""

from twisted.internet.defer import inlineCallbacks, maybeDeferred


class StoreTestsBase:
    """
    Builds C{self.store} before each test.

    Subclasses (the concrete test cases) define C{make_store()}, returning
    the store ready to use, or a Deferred firing with it, and arrange its
    clean-up themselves with C{addCleanup}.  A mixin whose stores need one
    more step before use (opening a database) overrides
    C{prepare_store(store)}, which may return a Deferred.
    """

    def make_store(self):
        raise NotImplementedError(f"{type(self).__name__} must define make_store()")

    def prepare_store(self, store):
        """Get C{store} ready for the tests; nothing to do by default."""

    @inlineCallbacks
    def setUp(self):
        self.store = yield maybeDeferred(self.make_store)
        yield maybeDeferred(self.prepare_store, self.store)
