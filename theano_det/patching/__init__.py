"""Patching a target Theano's source: the patch catalogue and transforms, the per-file
plan, the transaction that writes, and the manifest that undoes."""
