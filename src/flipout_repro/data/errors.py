"""The one error type of the data layer."""
from __future__ import annotations


class DataError(RuntimeError):
    """A data set that cannot be loaded; the message names the folder and the flag to change."""
