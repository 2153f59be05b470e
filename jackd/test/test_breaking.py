"""
``make breaking`` (tools/buf-breaking.sh) in scratch git repositories: it
compares with main, or with main's previous commit on main itself, and
passes when the base has no proto yet.
"""

import os
import shutil
import subprocess
import sys
import tempfile

from twisted.trial.unittest import TestCase

from jackd.test.sourcetree import findSourceTree
from jackd.test.test_generated import _missing

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


class BreakingTests(TestCase):
    def setUp(self):
        self.source = findSourceTree()
        self.buf = os.path.join(os.path.dirname(sys.executable), "buf")
        if self.source is None:
            _missing(self, "no source tree with tools/buf-breaking.sh here")
        if not os.access(self.buf, os.X_OK):
            _missing(self, f"no buf executable at {self.buf}; pip install '.[dev]'")
        self.repo = tempfile.mkdtemp(prefix="jackd-breaking-")
        self.addCleanup(shutil.rmtree, self.repo, True)
        self.git("init", "-q", "-b", "main")
        for name in ["buf.yaml", "tools/buf-breaking.sh"]:
            os.makedirs(os.path.dirname(os.path.join(self.repo, name)), exist_ok=True)
            shutil.copy(self.source.preauthChild(name).path, os.path.join(self.repo, name))

    def git(self, *args):
        subprocess.run(["git", *args], cwd=self.repo, check=True, capture_output=True,
                       env=dict(os.environ, **GIT_ENV))

    def add_proto(self):
        shutil.copytree(self.source.child("proto").path, os.path.join(self.repo, "proto"))

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def break_proto(self):
        path = os.path.join(self.repo, "proto", "jack", "jobs.proto")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write(text.replace("  string trace_id = 5;\n", ""))

    def run_check(self):
        return subprocess.run(
            ["bash", "tools/buf-breaking.sh"], cwd=self.repo, capture_output=True, text=True,
            env=dict(os.environ, BUF=self.buf,
                     BUF_CACHE_DIR=os.path.join(self.repo, ".buf-cache")),
        )

    def test_base_without_proto(self):
        """On main, when the previous commit has no proto yet, the check passes and says why."""
        self.commit("tools only")
        self.add_proto()
        self.commit("proto")
        result = self.run_check()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("has no proto/*.proto yet", result.stdout)

    def test_first_commit(self):
        """On main's first commit there is nothing to compare with, and it passes."""
        self.add_proto()
        self.commit("everything")
        result = self.run_check()
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("no previous commit", result.stdout)

    def test_working_tree_breaks_main(self):
        """A breaking change in the working tree fails against main."""
        self.add_proto()
        self.commit("proto")
        self.break_proto()
        result = self.run_check()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("comparing proto/ in the working tree with main (", result.stdout)
        self.assertIn("FAILED", result.stdout)

    def test_head_breaks_previous_commit(self):
        """On main itself (CI's fresh clone), a breaking last commit fails against main~1."""
        self.add_proto()
        self.commit("proto")
        self.break_proto()
        self.commit("drop trace_id")
        result = self.run_check()
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("with main~1", result.stdout)
