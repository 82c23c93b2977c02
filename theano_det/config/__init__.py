"""Theano's config file: the deterministic settings a target supports, editing the file
exactly, the record of what was set (kept in the manifest), and the settings Theano will use."""
