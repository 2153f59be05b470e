"""Python modules generated from proto/jack/*.proto by `make generate`.

Everything else in this package is generated code: never edit it by hand.
"""
