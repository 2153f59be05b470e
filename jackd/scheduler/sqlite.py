"""
A schedule store in an SQLite file: durable, embedded, for one Jack.

``sqlite3`` blocks, so every database call runs on one thread of a
one-thread pool that owns the only connection: calls never overlap, the
reactor never waits, and the Deferreds fire back on the reactor thread.
The file is in WAL mode with ``synchronous=FULL``: a transaction is on disk
when its commit returns, so ``add`` fires only with the jobs durable (they
survive a kill -9 or a power cut).

A file belongs to one Jack at a time: when the store opens, claims that a
previous process left behind (it died mid-dispatch) end at once, so their
jobs are published again without waiting out the lease.
"""

import os
import sqlite3
import uuid

from twisted.internet.defer import fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from jack.job_pb2 import Job
from jackd.errors import ConfigError, Unavailable
from jackd.interfaces import IScheduleStore

TABLE = "jack_scheduled_jobs"

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        job_id TEXT PRIMARY KEY,
        run_at INTEGER NOT NULL,
        due_at INTEGER NOT NULL,
        owner TEXT,
        job BLOB NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (due_at, job_id)",
)

# SQLite allows 32766 bound parameters per statement; stay well under.
CHUNK = 500

# How long a statement waits for another connection's lock (ms).
BUSY_TIMEOUT_MS = 5000


def check_path(path: str) -> None:
    """
    @raise ConfigError: C{path} cannot be an SQLite database file (empty,
        a directory, or in a directory that does not exist).
    """
    if not path:
        raise ConfigError(
            "SCHEDULE_STORE=sqlite needs SCHEDULE_DB (--schedule-db): the path "
            "of the SQLite file"
        )
    if os.path.isdir(path):
        raise ConfigError(f"SCHEDULE_DB {path!r} is a directory, not an SQLite file")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ConfigError(
            f"SCHEDULE_DB {path!r}: directory {directory!r} does not exist"
        )


@implementer(IScheduleStore)
class SQLiteScheduleStore:
    """
    @param path: the database file (created when missing).
    @param reactor: the reactor the Deferreds fire on.
    """

    durable = True

    def __init__(self, path, reactor):
        self._path = path
        self._reactor = reactor
        self.description = f"sqlite {os.path.abspath(path)}"
        self._owner = uuid.uuid4().hex
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="jack-schedule-sqlite")
        self._connection = None  # used only on the pool's thread
        self._closed = False

    @classmethod
    def from_options(cls, options, reactor):
        """
        The store that C{SCHEDULE_DB} names.

        @raise ConfigError: it cannot be an SQLite file.
        """
        check_path(options["schedule-db"])
        return cls(options["schedule-db"], reactor)

    def _run(self, work, *args):
        """
        Run C{work(connection, *args)} in one transaction on the database
        thread.

        @return: Deferred firing with its result, or failing with
            ``Unavailable`` when the database cannot be used.
        """
        if self._closed:
            return fail(Unavailable(f"schedule store {self.description}: closed"))
        if not self._pool.started:
            self._pool.start()
        return deferToThreadPool(
            self._reactor, self._pool, self._in_transaction, work, args
        )

    def _in_transaction(self, work, args):
        try:
            connection = self._connect()
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection, *args)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result
        except sqlite3.Error as error:
            # A broken file or a full disk: start again from a new
            # connection next time.
            self._disconnect()
            raise Unavailable(f"schedule store {self.description}: {error}") from None

    def _connect(self):
        if self._connection is None:
            connection = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False
            )
            try:
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = FULL")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _disconnect(self):
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def open(self):
        return self._run(_open, self._owner)

    def close(self):
        already, self._closed = self._closed, True
        if already or not self._pool.started:
            return succeed(None)
        d = deferToThreadPool(self._reactor, self._pool, self._disconnect)

        def stop(_):
            # Every call queued before this one is done and the thread is
            # idle: joining it does not wait.
            self._pool.stop()

        d.addBoth(stop)
        return d

    def add(self, jobs):
        rows = [
            (job.job_id, job.run_at.ToNanoseconds(), job.run_at.ToNanoseconds(),
             job.SerializeToString())
            for job in jobs
        ]
        return self._run(_add, rows)

    def claim(self, now, limit, until):
        return self._run(_claim, now, limit, until, self._owner)

    def release(self, job_ids, at):
        return self._run(_release, list(job_ids), at, self._owner)

    def remove(self, job_ids):
        return self._run(_remove, list(job_ids))

    def next_due(self):
        return self._run(_scalar, f"SELECT min(due_at) FROM {TABLE}")

    def count(self):
        return self._run(_scalar, f"SELECT count(*) FROM {TABLE}")

    def earliest_run_at(self):
        return self._run(_scalar, f"SELECT min(run_at) FROM {TABLE}")


# The work done on the database thread, each in one transaction.


def _open(connection, owner):
    for statement in SCHEMA:
        connection.execute(statement)
    # Claims of an earlier process on this file: it is gone.
    connection.execute(
        f"UPDATE {TABLE} SET due_at = run_at, owner = NULL "
        "WHERE owner IS NOT NULL AND owner != ?",
        (owner,),
    )


def _add(connection, rows):
    connection.executemany(
        f"INSERT OR IGNORE INTO {TABLE} (job_id, run_at, due_at, job) VALUES (?, ?, ?, ?)",
        rows,
    )


def _claim(connection, now, limit, until, owner):
    rows = connection.execute(
        f"SELECT job_id, job FROM {TABLE} WHERE due_at <= ? "
        "ORDER BY due_at, job_id LIMIT ?",
        (now, limit),
    ).fetchall()
    connection.executemany(
        f"UPDATE {TABLE} SET due_at = ?, owner = ? WHERE job_id = ?",
        [(until, owner, job_id) for job_id, _ in rows],
    )
    return [Job.FromString(blob) for _, blob in rows]


def _release(connection, job_ids, at, owner):
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start:start + CHUNK]
        connection.execute(
            f"UPDATE {TABLE} SET due_at = ?, owner = NULL WHERE owner = ? "
            f"AND job_id IN ({', '.join('?' * len(chunk))})",
            (at, owner, *chunk),
        )


def _remove(connection, job_ids):
    for start in range(0, len(job_ids), CHUNK):
        chunk = job_ids[start:start + CHUNK]
        connection.execute(
            f"DELETE FROM {TABLE} WHERE job_id IN ({', '.join('?' * len(chunk))})",
            chunk,
        )


def _scalar(connection, query):
    return connection.execute(query).fetchone()[0]
