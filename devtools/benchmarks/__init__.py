"""Benchmarks (`python -m benchmarks.<name>`); figures go in docs/benchmarks.md."""
