"""Seeding: seed_all in-process, PYTHONHASHSEED, and the `run` launcher that
makes an unmodified command reproducible."""
