"""
The PostgreSQL server the tests use (127.0.0.1:5432, trust auth, user
postgres; ``JACK_TEST_POSTGRES`` names another), with a fresh schema per
test so that tests never see each other's tables::

    conninfo = fresh_schema(self)   # dropped again when the test ends
    store = PostgresScheduleStore(conninfo)

These helpers block (they are for test set-up); the code under test talks
to the server asynchronously.
"""

import os

from jackd.testing.services import missing

SERVER = os.environ.get(
    "JACK_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test"
)


def connect(conninfo=SERVER, autocommit=True, **kwargs):
    import psycopg

    return psycopg.connect(conninfo, connect_timeout=3, autocommit=autocommit, **kwargs)


def fresh_schema(testCase, prefix="jack_test") -> str:
    """
    Create an empty schema of a name no other test uses, drop it (with
    everything in it) when C{testCase} ends, and return a connection string
    whose C{search_path} starts with it.  Skips (or fails, under
    C{JACK_REQUIRE_SERVICES}) when the server cannot be reached.
    """
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        admin = connect()
    except psycopg.OperationalError as error:
        missing(testCase, f"PostgreSQL ({SERVER}) is not reachable: {error}")
    fresh_schema.counter += 1
    schema = f"{prefix}_{os.getpid()}_{fresh_schema.counter}"
    with admin:
        admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.execute(f"CREATE SCHEMA {schema}")

    def drop():
        with connect() as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    testCase.addCleanup(drop)
    # The schema's name is also the connections' application_name, so a
    # test can find (and terminate) the server processes of its stores.
    return make_conninfo(SERVER, options=f"-c search_path={schema}", application_name=schema)


def terminate_backends(conninfo) -> int:
    """
    End every server process connected with C{conninfo}'s
    C{application_name} (as a database restart or failover would), and
    wait until they are gone.

    @return: how many there were.
    """
    import time

    from psycopg.conninfo import conninfo_to_dict

    name = conninfo_to_dict(conninfo)["application_name"]
    with connect() as admin:
        [(count,)] = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s", (name,),
        ).fetchall()
        deadline = time.monotonic() + 30
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()[0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"the server processes of {name} did not end")
            time.sleep(0.02)
    return count


fresh_schema.counter = 0
