"""Exceptions raised by the R bridge."""

from __future__ import annotations

__all__ = ["RError", "RTimeout", "RWorkerDied", "RBridgeError"]


class RError(RuntimeError):
    """R signalled an error while fitting.

    ``str(exc)`` and ``exc.r_message`` hold R's ``conditionMessage(e)`` verbatim;
    ``exc.r_call`` the deparsed ``conditionCall(e)`` (or None) and
    ``exc.messages`` the warnings and messages R emitted before the error.
    """

    def __init__(self, r_message: str, r_call: str | None = None, messages=()):
        super().__init__(r_message)
        self.r_message = r_message
        self.r_call = r_call
        self.messages = list(messages)


class RTimeout(RError, TimeoutError):
    """The fit overran its timeout; the worker running it was killed and replaced."""


class RWorkerDied(RError):
    """The worker process died (e.g. R crashed); it was replaced."""


class RBridgeError(RuntimeError):
    """The bridge's own Python code failed in the worker (not R): an exception type
    that is not a built-in one, re-raised under this name with the worker's traceback."""
