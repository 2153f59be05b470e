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


def connect(conninfo=SERVER, **kwargs):
    import psycopg

    return psycopg.connect(conninfo, connect_timeout=3, autocommit=True, **kwargs)


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
    return make_conninfo(SERVER, options=f"-c search_path={schema}")


fresh_schema.counter = 0
