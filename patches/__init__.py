# Patch definitions are data (*.toml); this file only makes the folder a package
# so that it ships as package data (theano_det.patches).
