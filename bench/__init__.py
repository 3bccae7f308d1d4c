"""Benchmarks for `make bench`; the entry point is bench/run.py."""
