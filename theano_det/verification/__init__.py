"""Verification: the `verify` self-test, the comparison of machines, and the graph audit
of compiled functions."""
