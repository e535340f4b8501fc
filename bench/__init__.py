"""Benchmarks on the real local control plane, reported as ratios and against targets.

`python -m bench --smoke | --quick | --full`; see docs/benchmarks.md for what each figure
measures and how. Not tests: they run minutes, print a table and write the document.
"""
