"""Benchmarks: each measures Tidings beside a baseline taken in the same run (`make bench`)."""
