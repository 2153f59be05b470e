"""
Find the source tree (the checkout with C{setup.py} and C{proto/}) for tests
that check files which are not installed: C{proto/}, the generated C{.pyi}
files, the Dockerfile, the README.
"""

import os

from twisted.python.filepath import FilePath

# Taken at import time: trial changes into _trial_temp/ only after it has
# imported the test modules.
_IMPORT_CWD = os.getcwd()


def _isSourceTree(path):
    return path.child("setup.py").isfile() and path.child("proto").isdir()


def findSourceTree():
    """
    The source tree's root, or C{None} when there is none.

    The candidates, in order: C{$JACK_SOURCE_ROOT}; the tree this module sits
    in (tests run from a checkout); the directory trial was started in and its
    parents (tests run from an installed copy, as C{make test} does).
    """
    candidates = []
    if os.environ.get("JACK_SOURCE_ROOT"):
        candidates.append(FilePath(os.environ["JACK_SOURCE_ROOT"]))
    candidates.append(FilePath(__file__).parent().parent().parent())
    here = FilePath(_IMPORT_CWD)
    while True:
        candidates.append(here)
        if here.parent() == here:
            break
        here = here.parent()
    for candidate in candidates:
        if _isSourceTree(candidate):
            return candidate
    return None
