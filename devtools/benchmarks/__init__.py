"""Benchmarks (`python -m devtools.benchmarks.<name>`); figures go in docs/benchmarks.md."""
