"""Benchmark harness of the pipeline: ``python -m bench [--quick] [--only NAME]``.

Not part of the test suite. See :mod:`bench.run` for the scenarios and the output.
"""
