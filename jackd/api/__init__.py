"""
The gRPC edge: grpcio's threaded server, whose calls hop to Deferred-based
servicers on the reactor thread (``edge.ReactorHop``); the servicers call the
domain and build the answer, and a ``JackError`` becomes its status code.
Nothing below this package imports gRPC.
"""
