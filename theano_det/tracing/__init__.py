"""Tracing: `trace` and `audit` of an unmodified command, and `diff`, which names the first
node where two traces part ways."""
