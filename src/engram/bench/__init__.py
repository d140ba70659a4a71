"""Benchmark harnesses (`engram bench ...`). The library never imports this package."""
