"""
A schedule store in PostgreSQL: durable, and shared by several Jack
replicas.

It talks to the database with psycopg 3's asyncio connections on the loop
of Twisted's asyncio reactor: no threads, and the reactor never waits.
Replicas claim due jobs with ``SELECT ... FOR UPDATE SKIP LOCKED`` and a
lease (``due_at`` moves to the end of the lease), so each job is claimed by
one replica at a time, and a replica that dies mid-dispatch leaves jobs that
another claims once the lease has run out.

The table ``jack_scheduled_jobs`` is created, when missing, in the first
schema of the connection's ``search_path``.
"""

import asyncio
import uuid

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from twisted.internet.defer import Deferred
from zope.interface import implementer

from jack.job_pb2 import Job
from jackd.errors import ConfigError, Unavailable
from jackd.interfaces import IScheduleStore

TABLE = "jack_scheduled_jobs"

# Seconds to wait for a connection when SCHEDULE_DB does not say.
CONNECT_TIMEOUT = 5

# Connections one store opens at most: enqueue calls write while the
# dispatcher claims and removes.
POOL_SIZE = 4

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


def _one_line(error) -> str:
    """A libpq message (often two lines, the second indented) on one line."""
    return " ".join(str(error).split()) or type(error).__name__


def describe(params: dict) -> str:
    """A connection's user, host, port and database; never its password."""
    user = params.get("user", "")
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port", "5432")
    return f"postgres {user + '@' if user else ''}{host}:{port}/{params.get('dbname', '')}"


class _Pool:
    """
    At most C{size} asyncio connections in autocommit mode, opened when
    needed; a broken one is dropped and a new one opened next time.
    """

    def __init__(self, conninfo, size):
        self._conninfo = conninfo
        self._size = size
        self._idle = []
        self._opened = 0
        self._waiters = []

    async def transaction(self, work, *args):
        """
        Run C{await work(connection, *args)} in one transaction.
        """
        connection = await self._acquire()
        try:
            async with connection.transaction():
                return await work(connection, *args)
        finally:
            self._release(connection)

    async def _acquire(self):
        while True:
            while self._idle:
                connection = self._idle.pop()
                if not connection.closed and not connection.broken:
                    return connection
                self._opened -= 1
            if self._opened < self._size:
                self._opened += 1
                try:
                    return await psycopg.AsyncConnection.connect(
                        self._conninfo, autocommit=True
                    )
                except BaseException:
                    self._opened -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter

    def _release(self, connection):
        if connection.closed or connection.broken:
            self._opened -= 1
            asyncio.ensure_future(connection.close())
        else:
            self._idle.append(connection)
        self._wake()

    def _wake(self):
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self):
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for connection in idle:
            await connection.close()


@implementer(IScheduleStore)
class PostgresScheduleStore:
    """
    @param conninfo: a libpq connection string or URI.
    @param pool_size: the most connections this store opens at once.
    """

    durable = True

    def __init__(self, conninfo, pool_size=POOL_SIZE):
        params = parse_conninfo(conninfo)
        if "connect_timeout" not in params:
            conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT)
        self.description = describe(params)
        self._owner = uuid.uuid4().hex
        self._pool = _Pool(conninfo, pool_size)

    @classmethod
    def from_options(cls, options, reactor):
        """
        The store that C{SCHEDULE_DB} names.

        @raise ConfigError: it is not a connection string.
        """
        return cls(options["schedule-db"])

    def _run(self, work, *args):
        """
        C{work(connection, *args)} in one transaction, as a Deferred.
        """
        return Deferred.fromFuture(asyncio.ensure_future(self._guarded(work, args)))

    async def _guarded(self, work, args):
        try:
            return await self._pool.transaction(work, *args)
        except psycopg.OperationalError as error:
            raise Unavailable(
                f"schedule store {self.description}: {_one_line(error)}"
            ) from None

    def open(self):
        return self._run(_open)

    def close(self):
        return Deferred.fromFuture(asyncio.ensure_future(self._pool.close()))

    def add(self, jobs):
        columns = ([], [], [])
        for job in jobs:
            columns[0].append(job.job_id)
            columns[1].append(job.run_at.ToNanoseconds())
            columns[2].append(job.SerializeToString())
        return self._run(_add, columns)

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


# The work of each call, in one transaction.


async def _open(connection):
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


async def _claim(connection, now, limit, until, owner):
    cursor = await connection.execute(
        f"""WITH due AS (
            SELECT job_id, due_at FROM {TABLE} WHERE due_at <= %(now)s
            ORDER BY due_at, job_id LIMIT %(limit)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {TABLE} AS held SET due_at = %(until)s, owner = %(owner)s
        FROM due WHERE held.job_id = due.job_id
        RETURNING due.due_at, held.job_id, held.job""",
        {"now": now, "limit": limit, "until": until, "owner": owner},
    )
    rows = sorted(await cursor.fetchall(), key=lambda row: (row[0], row[1]))
    return [Job.FromString(blob) for _, _, blob in rows]


async def _release(connection, job_ids, at, owner):
    if job_ids:
        await connection.execute(
            f"UPDATE {TABLE} SET due_at = %s, owner = NULL "
            "WHERE owner = %s AND job_id = ANY(%s)",
            (at, owner, job_ids),
        )


async def _remove(connection, job_ids):
    if job_ids:
        await connection.execute(f"DELETE FROM {TABLE} WHERE job_id = ANY(%s)", (job_ids,))


async def _scalar(connection, query):
    cursor = await connection.execute(query)
    return (await cursor.fetchone())[0]
