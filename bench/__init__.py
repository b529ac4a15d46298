"""Benchmarks: `make bench` runs them all and rewrites the results table in bench/README.md."""
