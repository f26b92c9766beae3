"""Lab tooling, apart from the product: loopback simulators of every external API, the benchmark fleet and the
`bench_*` commands, the demo wiring (`demo_sync`, `seed_demo`) and the benchmarks of `make bench`.

The product never imports this package (a test greps for it); it is an installed app only with DEBUG on or
`DEVTOOLS=true`, so a production install carries none of it.
"""
