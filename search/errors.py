"""Errors a person can act on.

Every failure that reaches the command line is a ``PixseekError``: the CLI prints its
message as one line and exits non-zero, never a traceback.
"""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none): what a
    one-line error quotes of a library's multi-line message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class PixseekError(Exception):
    """A failure with a message that says what went wrong and what to do."""


class ConfigError(PixseekError):
    """An invalid configuration value; the message names the key and what is allowed."""


class ModelLoadError(PixseekError):
    """A model that cannot be loaded (unknown id, no network, missing files)."""


class InputError(PixseekError):
    """Bad input from a person: an empty query, a missing file, an unreadable captions file."""


class DependencyError(PixseekError):
    """A required package that is missing or broken: an install problem, not bad input; the
    message names the pip command that fixes it."""


class ResourceError(ConfigError):
    """The device ran out of memory for what the configuration asks of it. A ConfigError
    (exit 2): the fix is a setting the message names (``model.batch_size``,
    ``model.device``)."""


class StorageError(PixseekError):
    """The disk is full, or the library is read-only: the message names the path and what
    is needed (free space, or a writable copy). Nothing committed is lost."""
