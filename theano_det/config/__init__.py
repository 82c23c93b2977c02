"""Theano's config file: the deterministic settings a target supports, editing
the file exactly, and the settings Theano will really use."""
