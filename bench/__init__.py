"""Benchmarks: scripts that print figures and ratios, never tests. Run: python -m bench.run"""
