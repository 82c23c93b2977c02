"""Failures with a message for the user; the CLI maps each class to an exit code."""

from __future__ import annotations


class TheanoDetError(Exception):
    """A failure we can explain: `message` says what happened, `hint` how to go on."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint


class Refused(TheanoDetError):
    """We will not act: unknown file content, drift, permission, lock held, broken input."""


class CannotRun(TheanoDetError):
    """Something we need is missing: no Theano, no usable interpreter, no GPU."""
