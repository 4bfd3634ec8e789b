"""Exceptions raised by genesel, each naming the input at fault and what to do."""

from __future__ import annotations

from os import PathLike

#: Library parameters whose command-line flag is not their name with dashes.
FLAG_OF_PARAMETER = {
    "max_epochs": "--epochs",
    "learning_rate": "--lr",
    "mixed_precision": "--no-mixed-precision",
}
_command_line = False


def use_command_line_names(enabled: bool = True) -> bool:
    """Make :func:`option_name` render flags (``--epochs``); return the previous setting.

    The ``genesel`` command switches it on for the length of a command.
    """
    global _command_line
    previous, _command_line = _command_line, enabled
    return previous


def parameter_flag(parameter: str) -> str:
    """The command-line flag of a library parameter (``block_rows`` -> ``--block-rows``).

    A selector's or decoder's own hyperparameter has no flag of its own: it is set with
    ``--param name=value`` (``parameter="param:name"``).
    """
    if parameter.startswith("param:"):
        return f"--param {parameter.removeprefix('param:')}=..."
    return FLAG_OF_PARAMETER.get(parameter, "--" + parameter.replace("_", "-"))


def option_name(parameter: str, value: object = None) -> str:
    """How a hint names an option: ``max_epochs`` in Python, ``--epochs`` on the command line.

    With ``value``, the setting: ``log2='no'`` in Python, ``--log2 no`` on the command line.
    A method's or decoder's own hyperparameter is named ``"param:name"``, as in
    :class:`ConfigError`: ``name`` in Python, ``--param name=value`` on the command line.
    """
    name = parameter.removeprefix("param:")
    if not _command_line:
        return name if value is None else f"{name}={value!r}"
    if parameter.startswith("param:"):
        return f"--param {name}" if value is None else f"--param {name}={value}"
    flag = parameter_flag(parameter)
    if value is None or value is True:
        return flag
    return f"{flag} {value}"


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
