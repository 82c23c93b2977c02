# Files in this folder run inside the *target* interpreter, which may be an old
# Python (3.5+, some also 2.7) without theano-det installed: each is self-contained,
# imports only the standard library, and is passed to that interpreter as a file.
