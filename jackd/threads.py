"""Handing work from other threads to the reactor thread, in batches."""

import threading


class ReactorQueue:
    """
    Items put from any thread reach C{deliver} on the reactor thread, as a
    list, in the order they were put.  The reactor is woken
    (``callFromThread``) once for all the items put while no batch was
    waiting for it, not once per item.

    @param reactor: the reactor (``IReactorThreads``).
    @param deliver: called on the reactor thread with each batch.
    """

    def __init__(self, reactor, deliver):
        self._reactor = reactor
        self._deliver = deliver
        self._lock = threading.Lock()
        self._items = []
        self._waking = False

    def __len__(self):
        """How many items wait for the reactor."""
        with self._lock:
            return len(self._items)

    def put(self, item):
        """From any thread: queue C{item} for the reactor thread."""
        with self._lock:
            self._items.append(item)
            if self._waking:
                return
            self._waking = True
        self._reactor.callFromThread(self._drain)

    def _drain(self):
        with self._lock:
            items, self._items = self._items, []
            self._waking = False
        self._deliver(items)
