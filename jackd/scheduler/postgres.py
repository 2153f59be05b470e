"""
A schedule store in PostgreSQL: durable, and shared by several Jack
replicas.

It talks to the database with psycopg 3's asyncio connections on the loop
of Twisted's asyncio reactor: no threads, and the reactor never waits.
Replicas claim due jobs with ``SELECT ... FOR UPDATE SKIP LOCKED`` and a
lease (``due_at`` moves to the end of the lease), so each job is claimed by
one replica at a time, and a replica that dies mid-dispatch leaves jobs that
another claims once the lease has run out.

Whether a job is due, and when a lease or a retry delay ends, is read from
the database's clock (``clock_timestamp()``), never a replica's own: a
replica whose clock runs fast does not publish early, nor take the live
claims of the others.  Times returned to the dispatcher are translated to
its clock.

A database that stops answering (a lock held by another session, a network
partition) fails each operation with ``Unavailable`` after the store's
timeout (C{SCHEDULE_DB_TIMEOUT}): the server ends statements and lock waits
after it too (``statement_timeout``, ``lock_timeout``), and TCP keepalives
and ``tcp_user_timeout`` find dead connections, unless C{SCHEDULE_DB} sets
them itself.

The table ``jack_scheduled_jobs`` is created, when missing, in the first
schema of the connection's ``search_path``.
"""

import asyncio
import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from jackd.errors import ConfigError, Unavailable
from jackd.interfaces import IScheduleStore
from jackd.scheduler import PARK_NS, decode_held, log_unreadable

TABLE = "jack_scheduled_jobs"

# Seconds to wait for a connection when SCHEDULE_DB does not say.
CONNECT_TIMEOUT = 5

# Seconds one operation may take, all told (waiting for a connection,
# connecting, the statements), unless the store is given its own timeout.
TIMEOUT = 10.0

# TCP keepalives on each connection (seconds), unless SCHEDULE_DB sets them:
# a connection to a server that vanished is found dead within about
# idle + interval * count, rather than the kernel's two hours.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3}

# Connections one store opens at most: enqueue calls write while the
# dispatcher claims and removes.
POOL_SIZE = 4

# The database's clock, in integer nanoseconds since the epoch (whole
# microseconds: PostgreSQL's resolution).
DB_NOW = "(floor(extract(epoch FROM clock_timestamp()) * 1000000)::bigint * 1000)"

# The store's clock: the caller's C{now} when given (tests driving the
# time), else the database's.
NOW = f"coalesce(%(now)s::bigint, {DB_NOW})"

SCHEMA = (
    # Replicas starting at once must not race to create the table.
    f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))",
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        job_id text COLLATE "C" PRIMARY KEY,
        run_at bigint NOT NULL,
        due_at bigint NOT NULL,
        owner text,
        job bytea NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (due_at, job_id)",
)



def parse_conninfo(conninfo: str) -> dict:
    """
    The parameters of a libpq connection string or URI.

    @raise ConfigError: C{conninfo} is empty or does not parse.
    """
    if not conninfo:
        raise ConfigError(
            "SCHEDULE_STORE=postgres needs SCHEDULE_DB (--schedule-db): a "
            "PostgreSQL connection string such as "
            "postgresql://jack@db.internal/jack"
        )
    try:
        return conninfo_to_dict(conninfo)
    except psycopg.Error as error:
        raise ConfigError(
            f"SCHEDULE_DB is not a PostgreSQL connection string: {_one_line(error)}"
        ) from None


def with_timeouts(conninfo: str, timeout: float) -> str:
    """
    C{conninfo} with the connection settings the store relies on, each
    unless C{conninfo} sets it: C{connect_timeout}, TCP keepalives,
    C{tcp_user_timeout}, and the server's C{statement_timeout} and
    C{lock_timeout} (through C{options}), the last three of C{timeout}
    seconds.
    """
    params = parse_conninfo(conninfo)
    extra = {key: value for key, value in KEEPALIVES.items() if key not in params}
    if "connect_timeout" not in params:
        extra["connect_timeout"] = CONNECT_TIMEOUT
    millis = max(1, int(timeout * 1000))
    if "tcp_user_timeout" not in params:
        extra["tcp_user_timeout"] = millis
    options = params.get("options", "")
    for setting in ("statement_timeout", "lock_timeout"):
        if setting not in options:
            options = f"{options} -c {setting}={millis}".strip()
    if options != params.get("options", ""):
        extra["options"] = options
    return make_conninfo(conninfo, **extra)


def _one_line(error) -> str:
    """
    A libpq or server message on one line: the server's primary message
    when there is one (without the "LINE 1: ..." context), else the text
    with its lines joined.
    """
    diag = getattr(error, "diag", None)
    primary = diag.message_primary if diag is not None else None
    return " ".join((primary or str(error)).split()) or type(error).__name__


def describe(params: dict) -> str:
    """A connection's user, host, port and database; never its password."""
    user = params.get("user", "")
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port", "5432")
    return f"postgres {user + '@' if user else ''}{host}:{port}/{params.get('dbname', '')}"


class _Closed(Exception):
    """The pool was closed while an operation waited for it."""


class _Pool:
    """
    At most C{size} asyncio connections in autocommit mode, opened when
    needed.  A connection goes back to the pool only when the operation on
    it ended normally (a result, or an error of the server on a sound
    connection); a broken or interrupted one is closed, and a new one
    opened next time.
    """

    def __init__(self, conninfo, size):
        self._conninfo = conninfo
        self._size = size
        self._idle = []
        self._opened = 0
        self._waiters = []
        self._closed = False

    async def acquire(self, fresh=False):
        """
        @param fresh: open a new connection rather than take an idle one.
        @return: C{(connection, reused)}: C{reused} when it was idle in the
            pool (it may have died there unnoticed).
        @raise _Closed: the pool is closed.
        """
        while True:
            if self._closed:
                raise _Closed()
            if fresh:
                self.drop_idle()  # once: those released later were just used
                fresh = False
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and not connection.broken:
                    return connection, True
                self.discard(connection)
            if self._opened < self._size:
                self._opened += 1
                try:
                    connection = await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True
                    )
                except BaseException:
                    self._opened -= 1
                    self._wake()
                    raise
                if self._closed:
                    self.discard(connection)
                    raise _Closed()
                return connection, False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    def release(self, connection):
        """Put C{connection} back for the next operation."""
        if self._closed or connection.closed or connection.broken:
            self.discard(connection)
            return
        self._idle.append(connection)
        self._wake()

    def discard(self, connection):
        """Close C{connection} (now, without waiting for the server)."""
        self._opened -= 1
        # AsyncConnection.close() does no I/O: it only frees libpq's handle.
        asyncio.ensure_future(connection.close())
        self._wake()

    def drop_idle(self):
        """
        Close every idle connection: one was found dead, and those opened
        with it (before a database restart, a failover) most likely are too.
        """
        idle, self._idle = self._idle, []
        for connection in idle:
            self.discard(connection)

    def _wake(self):
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self):
        """
        Close the idle connections and wake every waiter (they fail); the
        connections in use are closed as their operations end.
        """
        self._closed = True
        self.drop_idle()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


@implementer(IScheduleStore)
class PostgresScheduleStore:
    """
    @param conninfo: a libpq connection string or URI.
    @param pool_size: the most connections this store opens at once.
    @param timeout: seconds one operation may take before it fails with
        ``Unavailable``; also the server's C{statement_timeout} and
        C{lock_timeout}, and C{tcp_user_timeout}, unless C{conninfo} sets
        them.
    @param database_clock: C{True} to read the time from the database's
        clock, as replicas must; C{False} to use the C{now} the caller
        passes (the conformance tests drive the time that way).
    """

    durable = True

    def __init__(self, conninfo, pool_size=POOL_SIZE, timeout=TIMEOUT, database_clock=True):
        params = parse_conninfo(conninfo)
        self.description = describe(params)
        self._timeout = timeout
        self._database_clock = database_clock
        self._owner = uuid.uuid4().hex
        self._pool = _Pool(with_timeouts(conninfo, timeout), pool_size)
        self._tasks = set()
        self._closed = False
        self._closing = None  # a future set by close(), made on the loop

    @classmethod
    def from_options(cls, options, reactor):
        """
        The store that C{SCHEDULE_DB} names.

        @raise ConfigError: it is not a connection string.
        """
        return cls(options["schedule-db"], timeout=options["schedule-db-timeout"])

    def _run(self, work, *args):
        """
        C{work(connection, *args)} on a pooled connection, as a Deferred
        failing with ``Unavailable`` when the database cannot be reached,
        refuses for now, or does not answer within the timeout.
        """
        return Deferred.fromFuture(asyncio.ensure_future(self._bounded(work, args)))

    def _unavailable(self, reason):
        return Unavailable(f"schedule store {self.description}: {reason}")

    async def _bounded(self, work, args):
        if self._closed:
            raise self._unavailable("closed")
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_future()
        attempt = asyncio.ensure_future(self._attempt(work, args))
        self._tasks.add(attempt)
        attempt.add_done_callback(self._finished)
        try:
            await asyncio.wait(
                {attempt, self._closing}, timeout=self._timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        if not attempt.done():
            # Cut loose: the attempt ends in the background (psycopg asks
            # the server to cancel the statement) and its connection is
            # closed; the caller is not kept waiting for that.
            attempt.cancel()
            if self._closed:
                raise self._unavailable("closed")
            raise self._unavailable(f"no answer within {self._timeout:g}s")
        if attempt.cancelled():
            raise self._unavailable("closed")
        error = attempt.exception()
        if error is None:
            return attempt.result()
        if isinstance(error, _Closed):
            raise self._unavailable("closed")
        if isinstance(error, psycopg.Error):
            # The connection or the database: OperationalError (down, a
            # restart, a timeout), InternalError (a read-only standby after
            # a failover), InterfaceError (a connection gone), and also
            # what an operator changed under a running Jack (a table
            # dropped, a permission revoked).  Each passes, by itself or
            # once fixed, without a new Jack: the caller may retry.  (Our
            # own statements are exercised by every test.)
            raise self._unavailable(_one_line(error)) from None
        raise error

    def _finished(self, attempt):
        self._tasks.discard(attempt)
        if not attempt.cancelled():
            attempt.exception()  # retrieved: the caller got it, or gave up

    async def _attempt(self, work, args):
        """
        Run C{work} on a pooled connection; when that connection turns out
        to have died while idle in the pool (the server restarted, a
        failover, an idle timeout), drop the other idle ones and run it
        once more on a new connection.  Every operation may run twice
        that way: C{add}, C{release} and C{remove} are idempotent and
        reads harmless, and a C{claim} whose first run took effect only
        leaves those jobs claimed until their lease ends.
        """
        connection, reused = await self._pool.acquire()
        try:
            return await self._use(connection, work, args)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            if not (reused and connection.broken):
                raise
        self._pool.drop_idle()
        connection, _ = await self._pool.acquire(fresh=True)
        return await self._use(connection, work, args)

    async def _use(self, connection, work, args):
        try:
            result = await work(connection, *args)
        except psycopg.Error:
            self._pool.release(connection)  # discarded if broken
            raise
        except BaseException:
            # Interrupted (timeout, close) or a bug: the connection's state
            # is unknown.
            self._pool.discard(connection)
            raise
        self._pool.release(connection)
        return result

    def _now(self, now):
        """The store's clock parameter: C{None} means the database's."""
        return None if self._database_clock else now

    def open(self):
        """
        Connect and create the schema when missing.

        @return: Deferred failing with ``Unavailable`` (one line) when that
            fails, whatever the database's error (a schema missing from
            C{search_path} too): at start, any of them stops Jack with one
            line.
        """
        return self._run(_open)

    def close(self):
        """
        Close the connections; operations in flight are cancelled and fail
        with ``Unavailable``.
        """
        self._closed = True
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        for task in list(self._tasks):
            task.cancel()
        self._pool.close()
        return succeed(None)

    def add(self, jobs):
        columns = ([], [], [])
        for job in jobs:
            columns[0].append(job.job_id)
            columns[1].append(job.run_at.ToNanoseconds())
            columns[2].append(job.SerializeToString())
        return self._run(_add, columns)

    def claim(self, now, limit, lease):
        d = self._run(_claim, self._now(now), limit, lease, self._owner)
        d.addCallback(lambda claimed: log_unreadable(self, claimed))
        return d

    def release(self, job_ids, now, delay):
        return self._run(_release, list(job_ids), self._now(now), delay, self._owner)

    def remove(self, job_ids):
        return self._run(_remove, list(job_ids))

    def next_due(self, now):
        return self._run(_on_caller_clock, "min(due_at)", self._now(now), now)

    def count(self):
        return self._run(_scalar, f"SELECT count(*) FROM {TABLE}", {})

    def count_due(self, now):
        return self._run(
            _scalar, f"SELECT count(*) FROM {TABLE} WHERE run_at <= {NOW}",
            {"now": self._now(now)},
        )

    def earliest_run_at(self, now):
        return self._run(_on_caller_clock, "min(run_at)", self._now(now), now)


# The work of each call: one statement (autocommit), or a transaction.


async def _open(connection):
    async with connection.transaction():
        for statement in SCHEMA:
            await connection.execute(statement)


async def _add(connection, columns):
    job_ids, run_ats, blobs = columns
    await connection.execute(
        f"INSERT INTO {TABLE} (job_id, run_at, due_at, job) "
        "SELECT id, at, at, job FROM unnest(%s::text[], %s::bigint[], %s::bytea[]) "
        "AS new (id, at, job) ON CONFLICT (job_id) DO NOTHING",
        (job_ids, run_ats, blobs),
    )


async def _claim(connection, now, limit, lease, owner):
    """
    @return: the jobs claimed, and C{(job_id, error)} for each row that
        does not decode (set aside for L{PARK_NS}, unclaimed).
    """
    cursor = await connection.execute(
        f"""WITH clock AS MATERIALIZED (SELECT {NOW} AS now),
        due AS (
            SELECT job_id, due_at FROM {TABLE}
            WHERE due_at <= (SELECT now FROM clock)
            ORDER BY due_at, job_id LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {TABLE} AS held
        SET due_at = (SELECT now FROM clock) + %(lease)s, owner = %(owner)s
        FROM due WHERE held.job_id = due.job_id
        RETURNING due.due_at, held.job_id, held.job, (SELECT now FROM clock)""",
        {"now": now, "limit": limit, "lease": lease, "owner": owner},
    )
    rows = sorted(await cursor.fetchall(), key=lambda row: (row[0], row[1]))
    jobs, unreadable = decode_held((job_id, blob) for _, job_id, blob, _ in rows)
    if unreadable:
        await connection.execute(
            f"UPDATE {TABLE} SET due_at = %s, owner = NULL WHERE job_id = ANY(%s)",
            (rows[0][3] + PARK_NS, [job_id for job_id, _ in unreadable]),
        )
    return jobs, unreadable


async def _release(connection, job_ids, now, delay, owner):
    if job_ids:
        await connection.execute(
            f"UPDATE {TABLE} SET due_at = {NOW} + %(delay)s, owner = NULL "
            "WHERE owner = %(owner)s AND job_id = ANY(%(ids)s)",
            {"now": now, "delay": delay, "owner": owner, "ids": job_ids},
        )


async def _remove(connection, job_ids):
    if job_ids:
        await connection.execute(f"DELETE FROM {TABLE} WHERE job_id = ANY(%s)", (job_ids,))


async def _scalar(connection, query, params):
    cursor = await connection.execute(query, params)
    return (await cursor.fetchone())[0]


async def _on_caller_clock(connection, aggregate, now, caller_now):
    """
    C{aggregate} of the table (a time on the store's clock) moved to the
    caller's clock: C{caller_now} plus how far it is from the store's now.
    """
    ahead = await _scalar(
        connection, f"SELECT {aggregate} - {NOW} FROM {TABLE}", {"now": now}
    )
    return None if ahead is None else caller_now + ahead
