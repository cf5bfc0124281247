"""Benchmarks: each measures one part and writes its figures with the machine it ran on.

Run one with python -m bench.<name>, all with make bench (python -m bench.run).
"""
