"""Errors a user can cause while a compiled model runs: bad data, a NaN during fitting,
an impossible request. They carry a finished message (the data variable and index, or
the .bgm location) and are printed by the CLI without a traceback."""
from __future__ import annotations


class BgmRuntimeError(Exception):
    """Base class: the message is complete and meant for the user."""


class DataError(BgmRuntimeError):
    """A data file or dict that does not fit the model's `data` declarations."""


class ModelError(BgmRuntimeError):
    """A model that cannot be evaluated as asked (NaN log density, improper prior draw, ...)."""

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
