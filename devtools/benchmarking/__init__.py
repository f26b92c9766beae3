"""Shared machinery of the latency and soak benchmarks (`bench_latency`, `bench_soak`).

A fleet of benchmark customers wired to the simulators (built with bench_sync's helpers), the Django app
served over real HTTP for the simulators' webhooks, in-process workers, and MBN-side measurements.
"""
