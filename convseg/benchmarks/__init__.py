"""Benchmark helpers shared by tools/benchmark.py and tools/benchmark_gpu.py."""
