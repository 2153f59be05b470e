# Jack (jackd): the gRPC front door for background jobs.
# Configuration comes from the environment (GRPC_PORT, GCS_BUCKET, GCS_PREFIX,
# QUEUE_BACKEND, PUBSUB_PROJECT); the defaults are memory storage and the noop
# backend.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what `pip install .` needs; the generated jack/ modules are committed.
WORKDIR /src
COPY setup.py ./
COPY jack/ jack/
COPY jackd/ jackd/
COPY twisted/ twisted/

# A regular install, then the Twisted plugin cache (dropin.cache), built now
# because the runtime user cannot write to site-packages. Run from / so that
# only the installed twisted/plugins/ is scanned.
RUN pip install --no-cache-dir . \
 && cd / \
 && python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))" \
 && rm -rf /src

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent jack
WORKDIR /app
USER 10001:10001

EXPOSE 50051

# twistd is PID 1, in the foreground, so it receives SIGTERM directly.
CMD ["twistd", "-n", "--pidfile=", "jack"]
