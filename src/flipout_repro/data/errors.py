"""The error types of the data layer."""
from __future__ import annotations


class DataError(RuntimeError):
    """A data set that cannot be loaded; the message names the folder and the flag to change."""


class DataFileError(DataError):
    """A file of a streamed data set that cannot be read, met while a run trains or evaluates: its run folder
    exists by then (the message names the file; ``dataset.verify=true`` finds every such file before a run)."""
