"""Simulated plant equipment as pure data and functions (no sockets).

A stub is deterministic from ``(seed, tick)``, so it doubles as the oracle in end-to-end checks:
given the tick a poll saw (every stub exposes it as a sequence counter), the test recomputes
exactly what the gateway must have delivered.
"""
