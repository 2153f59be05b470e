"""
Jack's benchmarks (``make bench``): Jack's enqueue path side by side with a
bare gRPC echo server and with Celery and RQ, all in one interleaved run on
the same machine, so that the figures that matter are same-run ratios.

``python -m bench --help`` runs it; ``bench/results/`` holds the outputs
and ``bench/results/NOTES.md`` what was measured and tried.
"""
