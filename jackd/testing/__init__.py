"""
Helpers for Jack's own tests and for tests of code that uses Jack.
"""
