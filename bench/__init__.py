"""Benchmarks (not part of the test suite): ``lsi bench`` runs them and writes docs/results/bench.json."""
