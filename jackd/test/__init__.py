"""
Tests for jackd.
"""
