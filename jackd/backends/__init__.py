"""Queue backend implementations (``IQueueBackend``)."""
