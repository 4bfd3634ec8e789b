"""Exceptions raised by genesel, each naming the input at fault and what to do."""

from __future__ import annotations

from os import PathLike


class GeneselError(Exception):
    """Base class of every error genesel raises on purpose."""


class InputFileError(GeneselError, ValueError):
    """A file cannot be used: missing, unreadable, malformed or inconsistent.

    Parameters
    ----------
    path
        The file at fault.
    problem
        What is wrong with it.
    hint
        What the user can do about it.
    """

    def __init__(self, path: str | PathLike[str], problem: str, hint: str | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        message = f"{self.path}: {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


class CheckpointMismatchError(InputFileError):
    """A training checkpoint that this run must not continue.

    It was made with other inputs or options, without a run fingerprint, or trained past
    this run's budget.
    """


class StoreVersionError(InputFileError):
    """A preprocessed store was written by an incompatible genesel version."""


class ConfigError(GeneselError, ValueError):
    """An option or configuration value is invalid.

    Parameters
    ----------
    message
        What is wrong, naming the Python parameter (``ridge``, ``device``), never a
        command-line flag: the library is also called from Python.
    parameter
        The parameter at fault, when there is one; the command line adds its flag to the
        message (:func:`genesel.cli.main.describe_error`).
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        self.parameter = parameter
        super().__init__(message)
