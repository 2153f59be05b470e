"""
The gRPC edge: grpc.aio servicers that decode a request, call the
Deferred-based domain, and encode the answer or map a ``JackError`` to its
status code.  Nothing below this package imports gRPC.
"""
