"""
Tests that need an outside server (an emulator, PostgreSQL) skip with a
reason when it is missing on a developer's machine, and fail instead when
C{JACK_REQUIRE_SERVICES} is set, as ``.ci/run`` does.
"""

import os

from twisted.trial.unittest import SkipTest


def services_required() -> bool:
    return os.environ.get("JACK_REQUIRE_SERVICES", "") not in ("", "0")


def missing(testCase, reason):
    """
    Skip C{testCase} for C{reason}, or fail it when C{JACK_REQUIRE_SERVICES}
    is set.
    """
    if services_required():
        testCase.fail(f"{reason} (JACK_REQUIRE_SERVICES is set)")
    raise SkipTest(reason)
