"""Benchmark tooling: the scenario corpus generator and what replays it."""
