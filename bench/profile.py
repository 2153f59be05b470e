"""
Where Jack's server process spends its time under closed-loop load:
``python -m bench.profile [--variant jack-enqueue] [--duration 15]``.

It starts the variant's server pinned to the server core, drives it from a
load process as the benchmark does, records the server with py-spy
(``py-spy record --format raw``; needs the ``bench`` extra and permission to
ptrace) and prints the functions with the most samples, by self time and by
inclusive time.  ``--svg`` also writes py-spy's flame graph.
"""

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading

from bench.run import LoadProcesses, Runner, configure
from bench.variants import BY_NAME


def parse_collapsed(text):
    """
    @return: C{(total, self_counts, inclusive_counts)} from py-spy's
        collapsed stacks (``frame;frame;frame COUNT`` per line).
    """
    total = 0
    own = collections.Counter()
    inclusive = collections.Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        count = int(count)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    return total, own, inclusive


def _short(frame):
    """``handler (/x/site-packages/grpc/aio/_server.py:12)`` -> ``handler (grpc/aio/_server.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "lib/python3", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


def table(title, counts, total, top):
    lines = [title]
    for frame, count in counts.most_common(top):
        lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="jack-enqueue", choices=sorted(BY_NAME))
    p.add_argument("--duration", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--svg", default=None, help="also write a flame graph here")
    p.add_argument("--idle", action="store_true",
                   help="include idle frames (waiting in epoll)")
    p.add_argument("--native", action="store_true",
                   help="include native frames (gRPC's Cython and C core)")
    args = p.parse_args(argv)
    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(py_spy):
        sys.exit("py-spy is not installed: pip install '.[bench]'")

    config = configure(["--variants", args.variant])
    runner = Runner(config)
    variant = BY_NAME[args.variant]
    _server, spec, server_pids, cleanup = runner._target(variant)
    load = None
    try:
        load = LoadProcesses(runner._specs(variant, spec), runner.load_cpus)
        with tempfile.TemporaryDirectory() as directory:
            raw = os.path.join(directory, "stacks.txt")
            record = [py_spy, "record", "--pid", str(server_pids[0]), "--rate", str(args.rate),
                      "--duration", str(int(args.duration)), "--format", "raw", "-o", raw]
            if args.idle:
                record.append("--idle")
            if args.native:
                record.append("--native")
            else:
                # Not stopping the server to sample it keeps the numbers
                # closer to an unprofiled run (native stacks need stops).
                record.append("--nonblocking")
            spy = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
            flame = None
            if args.svg:
                # A second recorder at the same time, for the flame graph.
                flame = subprocess.Popen(
                    [py_spy, "record", "--pid", str(server_pids[0]), "--rate", str(args.rate),
                     "--duration", str(int(args.duration)), "-o", args.svg, "--nonblocking"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
            result = {}
            phase = threading.Thread(target=lambda: result.update(load.phase(
                {"phase": "closed", "warmup": 0.5, "duration": args.duration + 1,
                 "concurrency": variant.concurrency},
                server_pids,
            )))
            phase.start()
            _, errors = spy.communicate()
            phase.join()
            if spy.returncode != 0:
                sys.exit(f"py-spy failed: {errors.strip()}")
            with open(raw) as f:
                text = f.read()
            if flame is not None:
                flame.wait()
        total, own, inclusive = parse_collapsed(text)
        print(f"{args.variant}: {result.get('calls_per_s', 0):,.0f} calls/s under py-spy, "
              f"server {result.get('server_cores', 0):.2f} cores; {total} samples")
        print(table("self time:", own, total, args.top))
        print(table("inclusive time:", inclusive, total, args.top))
    finally:
        if load is not None:
            load.close()
        cleanup()
        runner.close()


if __name__ == "__main__":
    main()
