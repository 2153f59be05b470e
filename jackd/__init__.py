"""Jack (jackd): the gRPC front door for background jobs."""
