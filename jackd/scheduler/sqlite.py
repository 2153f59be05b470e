"""
A schedule store in an SQLite file: durable, embedded, for one Jack.

``sqlite3`` blocks, so every database call runs on one thread of a
one-thread pool that owns the only connection: calls never overlap, the
reactor never waits, and the Deferreds fire back on the reactor thread.
The file is in WAL mode with ``synchronous=FULL``: a transaction is on disk
when its commit returns, so ``add`` fires only with the jobs durable (they
survive a kill -9 or a power cut).

A file belongs to one Jack at a time, and the store makes sure of it: it
holds an exclusive lock (``flock``) on ``<file>.lock`` while open, so a
second Jack on the same file does not start.  Since no other process can be
using the file, claims that a previous process left behind (it died
mid-dispatch) end when the store opens, so their jobs are published again
without waiting out the lease.

The store's clock is the dispatcher's (the C{now} it passes): one Jack, one
clock.
"""

import errno
import fcntl
import os
import sqlite3
import uuid

from twisted.internet.defer import fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from jackd.errors import ConfigError, Unavailable
from jackd.interfaces import IScheduleStore
from jackd.scheduler import PARK_NS, decode_held, log_unreadable

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

# How long a statement waits for another connection's lock (seconds),
# unless the store is given its own timeout (SCHEDULE_DB_TIMEOUT).
BUSY_TIMEOUT = 10.0



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
    @param timeout: seconds a statement waits for another connection's
        lock on the file (SQLite's busy timeout).
    @param connect: opens the connection, as C{sqlite3.connect} does (for
        tests that watch the statements the store runs).
    """

    durable = True

    def __init__(self, path, reactor, timeout=BUSY_TIMEOUT, connect=sqlite3.connect):
        self._path = path
        self._reactor = reactor
        self._timeout = timeout
        self._sqlite_connect = connect
        self.description = f"sqlite {os.path.abspath(path)}"
        self.lock_path = os.path.abspath(path) + ".lock"
        self._owner = uuid.uuid4().hex
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="jack-schedule-sqlite")
        self._connection = None  # used only on the pool's thread
        self._lock_fd = None
        self._closed = False

    @classmethod
    def from_options(cls, options, reactor):
        """
        The store that C{SCHEDULE_DB} names.

        @raise ConfigError: it cannot be an SQLite file.
        """
        check_path(options["schedule-db"])
        return cls(options["schedule-db"], reactor, timeout=options["schedule-db-timeout"])

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
            connection = self._sqlite_connect(
                self._path, isolation_level=None, check_same_thread=False
            )
            try:
                connection.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
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
        """
        Take the file's lock, then create the schema when missing and end
        the claims an earlier process left.

        @return: Deferred failing with ``ConfigError`` when another Jack
            holds the file, with ``Unavailable`` when it cannot be used.
        """
        try:
            self._lock()
        except (ConfigError, Unavailable) as error:
            return fail(error)
        return self._run(_open, self._owner)

    def _lock(self):
        """
        Hold an exclusive lock on C{<file>.lock} until L{close}, and write
        this process's id in it (for the message a second Jack gives).

        @raise ConfigError: another process holds it.
        @raise Unavailable: the lock file cannot be opened.
        """
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise Unavailable(
                f"schedule store {self.description}: cannot open its lock file "
                f"{self.lock_path}: {error.strerror}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Unavailable(
                    f"schedule store {self.description}: cannot lock "
                    f"{self.lock_path}: {error.strerror}"
                ) from None
            by = f"process {holder}" if holder.isdigit() else "another process"
            raise ConfigError(
                f"cannot open the schedule store {self.description}: another Jack "
                f"({by}) is using it ({self.lock_path} is locked); one Jack per "
                "SQLite file"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._lock_fd = fd

    def _unlock(self):
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def close(self):
        already, self._closed = self._closed, True
        if already or not self._pool.started:
            self._unlock()
            return succeed(None)
        d = deferToThreadPool(self._reactor, self._pool, self._disconnect)

        def stop(_):
            # Every call queued before this one is done and the thread is
            # idle: joining it does not wait.
            self._pool.stop()
            self._unlock()

        d.addBoth(stop)
        return d

    def add(self, jobs):
        rows = [
            (job.job_id, job.run_at.ToNanoseconds(), job.run_at.ToNanoseconds(),
             job.SerializeToString())
            for job in jobs
        ]
        return self._run(_add, rows)

    def claim(self, now, limit, lease):
        d = self._run(_claim, now, limit, now + lease, self._owner)
        d.addCallback(lambda claimed: log_unreadable(self, claimed))
        return d

    def release(self, job_ids, now, delay):
        return self._run(_release, list(job_ids), now + delay, self._owner)

    def remove(self, job_ids):
        return self._run(_remove, list(job_ids))

    def next_due(self, now):
        return self._run(_scalar, f"SELECT min(due_at) FROM {TABLE}")

    def count(self):
        return self._run(_scalar, f"SELECT count(*) FROM {TABLE}")

    def count_due(self, now):
        return self._run(_scalar, f"SELECT count(*) FROM {TABLE} WHERE run_at <= ?", now)

    def earliest_run_at(self, now):
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
    """
    @return: the jobs claimed, and C{(job_id, error)} for each row that
        does not decode (set aside for L{PARK_NS}, unclaimed).
    """
    rows = connection.execute(
        f"SELECT job_id, job FROM {TABLE} WHERE due_at <= ? "
        "ORDER BY due_at, job_id LIMIT ?",
        (now, limit),
    ).fetchall()
    jobs, unreadable = decode_held(rows)
    set_aside = {job_id for job_id, _ in unreadable}
    claimed = [job_id for job_id, _ in rows if job_id not in set_aside]
    connection.executemany(
        f"UPDATE {TABLE} SET due_at = ?, owner = ? WHERE job_id = ?",
        [(until, owner, job_id) for job_id in claimed]
        + [(now + PARK_NS, None, job_id) for job_id, _ in unreadable],
    )
    return jobs, unreadable


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


def _scalar(connection, query, *args):
    return connection.execute(query, args).fetchone()[0]
