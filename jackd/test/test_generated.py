"""
The committed protobuf/gRPC modules in C{jack/} are exactly what the pinned
generator makes from C{proto/}, and C{proto/} passes C{buf lint}.
"""

import difflib
import importlib.util
import os
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from jackd.test.sourcetree import findSourceTree
from jackd.testing.services import missing as _missing

ROOT = findSourceTree() or FilePath(__file__).parent().parent().parent()
PROTO_DIR = ROOT.descendant(["proto", "jack"])
JACK_DIR = ROOT.child("jack")

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _generatedNames(directory):
    """
    The names of the generated modules in C{directory}.
    """
    if not directory.isdir():
        return set()
    return {
        name
        for name in directory.listdir()
        if name.endswith(GENERATED_SUFFIXES)
    }


def _diff(name, expected, actual, limit=40):
    """
    The first C{limit} lines of a unified diff between two versions of a file.
    """
    lines = list(
        difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(),
            actual.decode("utf-8", "replace").splitlines(),
            f"committed jack/{name}",
            f"regenerated jack/{name}",
            lineterm="",
        )
    )
    return "\n".join(lines[:limit])


class GeneratedCodeTests(TestCase):
    """
    The generated modules are current: nobody edited them by hand and nobody
    changed a C{.proto} file without running C{make generate}.
    """

    def setUp(self):
        if not PROTO_DIR.isdir():
            _missing(
                self,
                "no source tree with proto/jack/ found (run the tests from "
                "the checkout, or set JACK_SOURCE_ROOT)",
            )

    def test_regeneratedModulesMatchCommitted(self):
        """
        Running C{python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=.
        --grpc_python_out=. proto/jack/*.proto} produces exactly the committed
        C{jack/*_pb2.py}, C{*_pb2.pyi} and C{*_pb2_grpc.py}, byte for byte, with
        no file missing and none extra.
        """
        if importlib.util.find_spec("grpc_tools") is None:
            _missing(
                self,
                "grpc_tools is not importable; install the dev extra: "
                "pip install '.[dev]' (or run make test)",
            )
        out = FilePath(self.mktemp())
        out.makedirs()
        protos = sorted(
            "proto/jack/" + name
            for name in PROTO_DIR.listdir()
            if name.endswith(".proto")
        )
        self.assertTrue(protos, "proto/jack/ holds no .proto files")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grpc_tools.protoc",
                "-Iproto",
                "--python_out=" + out.path,
                "--pyi_out=" + out.path,
                "--grpc_python_out=" + out.path,
                *protos,
            ],
            cwd=ROOT.path,
            capture_output=True,
            text=True,
        )
        self.assertEqual(
            result.returncode,
            0,
            f"protoc failed:\n{result.stdout}{result.stderr}",
        )

        regenerated = out.child("jack")
        expectedNames = _generatedNames(regenerated)
        committedNames = _generatedNames(JACK_DIR)
        self.assertTrue(expectedNames, "protoc generated no modules")
        self.assertEqual(
            (
                sorted(expectedNames - committedNames),
                sorted(committedNames - expectedNames),
            ),
            ([], []),
            "(missing from jack/, extra in jack/): run `make generate`",
        )

        stale = []
        for name in sorted(expectedNames):
            expected = JACK_DIR.child(name).getContent()
            actual = regenerated.child(name).getContent()
            if expected != actual:
                stale.append(_diff(name, expected, actual))
        if stale:
            self.fail(
                "jack/ differs from the regenerated code; run `make generate`:\n"
                + "\n".join(stale)
            )

    def test_bufLint(self):
        """
        C{buf lint} (the C{buf} installed next to the running Python by the
        C{dev} extra) finds nothing to report in C{proto/}.
        """
        buf = os.path.join(os.path.dirname(sys.executable), "buf")
        if not os.access(buf, os.X_OK):
            _missing(
                self,
                f"no buf executable at {buf}; install the dev extra: "
                "pip install '.[dev]' (or run make test)",
            )
        env = dict(os.environ)
        env.setdefault("BUF_CACHE_DIR", ROOT.child(".buf-cache").path)
        result = subprocess.run(
            [buf, "lint"],
            cwd=ROOT.path,
            env=env,
            capture_output=True,
            text=True,
        )
        self.assertEqual(
            result.returncode,
            0,
            f"buf lint reported (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}",
        )
