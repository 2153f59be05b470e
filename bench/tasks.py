"""
The job the Celery and RQ producers enqueue.  Nothing consumes it during a
benchmark: only the enqueue side is measured, as for Jack.
"""

# RQ stores the function by name; no worker needs to import it.
RQ_FUNCTION = "bench.tasks.work"

CELERY_TASK = "bench.work"


def work(payload):
    """The job's body (never run by the benchmark)."""
    return len(payload)


def celery_app(broker, queue):
    """
    A Celery app with default settings except the queue name (so that each
    run's jobs can be deleted afterwards).

    @return: C{(app, task)}.
    """
    from celery import Celery

    app = Celery("jack-bench", broker=broker)
    app.conf.task_default_queue = queue
    app.conf.broker_connection_retry_on_startup = True
    task = app.task(name=CELERY_TASK)(work)
    return app, task
