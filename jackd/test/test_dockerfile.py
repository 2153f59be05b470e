"""
The container image runs the documented command: C{twistd -n --pidfile= jack}
as PID 1, as a non-root user, on C{python:3.11-slim}.
"""

import json
import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase

from jackd.test.sourcetree import findSourceTree

ROOT = findSourceTree() or FilePath(__file__).parent().parent().parent()

DOCUMENTED_COMMAND = ["twistd", "-n", "--pidfile=", "jack"]


def parseDockerfile(text):
    """
    Split a Dockerfile into C{(INSTRUCTION, arguments)} pairs, joining
    continuation lines and dropping comments and blank lines.
    """
    instructions = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        if full:
            keyword, _, arguments = full.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    if pending.strip():
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def dockerSections(markdown):
    """
    The lines inside fenced code blocks that sit under a Markdown heading
    whose text contains "Docker" (any case).
    """
    lines = []
    heading = ""
    fence = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence is None:
            match = re.match(r"(`{3,}|~{3,})", stripped)
            if match:
                fence = match.group(1)
            elif re.match(r"#{1,6}\s", stripped):
                heading = stripped
        elif stripped.startswith(fence):
            fence = None
        elif "docker" in heading.lower():
            lines.append(stripped)
    return lines


class DockerfileTests(TestCase):
    """
    The Dockerfile at the root of the source tree.
    """

    def setUp(self):
        dockerfile = ROOT.child("Dockerfile")
        if not dockerfile.exists():
            raise SkipTest(
                "no source tree with a Dockerfile found (run the tests from "
                "the checkout, or set JACK_SOURCE_ROOT)"
            )
        self.instructions = parseDockerfile(dockerfile.getContent().decode("utf-8"))

    def finalStage(self):
        """
        The instructions of the last build stage, starting with its C{FROM}.
        """
        starts = [
            index
            for index, (keyword, _) in enumerate(self.instructions)
            if keyword == "FROM"
        ]
        self.assertTrue(starts, "the Dockerfile has no FROM")
        return self.instructions[starts[-1]:]

    def command(self):
        """
        The final stage's C{CMD}, decoded from its JSON exec form.
        """
        commands = [args for keyword, args in self.finalStage() if keyword == "CMD"]
        self.assertEqual(len(commands), 1, "expected exactly one CMD")
        try:
            command = json.loads(commands[0])
        except ValueError:
            self.fail(f"CMD is not in JSON exec form: {commands[0]}")
        self.assertIsInstance(command, list)
        return command

    def test_baseImage(self):
        """
        The image is built on C{python:3.11-slim}.
        """
        stage = self.finalStage()
        image = stage[0][1].split()[0]
        self.assertEqual(image, "python:3.11-slim")

    def test_commandIsTwistdInForeground(self):
        """
        C{CMD} is the exec form of C{twistd -n --pidfile= jack}: twistd is PID
        1, stays in the foreground and writes no pid file; no C{ENTRYPOINT}
        wraps it in a shell.
        """
        self.assertEqual(self.command(), DOCUMENTED_COMMAND)
        entrypoints = [k for k, _ in self.finalStage() if k == "ENTRYPOINT"]
        self.assertEqual(entrypoints, [])

    def test_commandIsDocumented(self):
        """
        README.md shows the image's command, C{" ".join(CMD)}, in a fenced code
        block under a heading that mentions Docker.
        """
        readme = ROOT.child("README.md")
        self.assertTrue(readme.exists(), "README.md does not exist yet")
        text = readme.getContent().decode("utf-8")
        command = " ".join(self.command())
        self.assertIn(command, text)
        self.assertTrue(
            any(command in line for line in dockerSections(text)),
            f"{command!r} is not in a fenced code block under a Docker heading",
        )

    def test_runsAsNonRootUser(self):
        """
        The last C{USER} before C{CMD} in the final stage names a user other
        than root (name C{root} or uid 0).
        """
        user = None
        for keyword, arguments in self.finalStage():
            if keyword == "USER":
                user = arguments
            elif keyword == "CMD":
                break
        self.assertIsNotNone(user, "no USER before CMD: the image runs as root")
        name = user.split(":")[0]
        self.assertNotIn(name, ("root", "0"))

    def test_exposesGrpcPort(self):
        """
        The image exposes the default gRPC port, 50051.
        """
        exposed = [
            port.split("/")[0]
            for keyword, arguments in self.finalStage()
            if keyword == "EXPOSE"
            for port in arguments.split()
        ]
        self.assertIn("50051", exposed)


class ParserTests(TestCase):
    """
    The small Dockerfile and Markdown readers the tests above rely on.
    """

    def test_continuationLinesJoin(self):
        """
        C{parseDockerfile} joins backslash-continued lines and drops comments,
        including comments between continuation lines.
        """
        text = (
            "# comment\n"
            "FROM python:3.11-slim AS base\n"
            "RUN a \\\n"
            "# inner comment\n"
            " && b\n"
            'CMD ["x", "y"]\n'
        )
        self.assertEqual(
            parseDockerfile(text),
            [
                ("FROM", "python:3.11-slim AS base"),
                ("RUN", "a  && b"),
                ("CMD", '["x", "y"]'),
            ],
        )

    def test_dockerSections(self):
        """
        C{dockerSections} returns only code-block lines under a heading that
        mentions Docker, not prose and not code under other headings.
        """
        text = (
            "# Jack\n"
            "```\nmake run\n```\n"
            "## Running in Docker\n"
            "twistd in prose\n"
            "```sh\ndocker run jack\n# twistd -n\n```\n"
            "## Other\n"
            "```\nmake test\n```\n"
        )
        self.assertEqual(dockerSections(text), ["docker run jack", "# twistd -n"])
