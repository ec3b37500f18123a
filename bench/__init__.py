"""latentkit's benchmarks: side-by-side timings against hand-written PyTorch and peer libraries.

Run ``python -m bench.run`` (``--quick`` for a tiny size); it prints the tables and writes
``docs/benchmarks.md``, ``docs/img/bench_*.png`` and ``bench/results.json``.
"""
