"""Exceptions for mistakes a user can make and fix (bad config, unknown env, ...).

The CLI turns any `UserError` into one line on stderr and exit code 2; everything else is a bug
and keeps its traceback. Each class also derives from the builtin a Python user would expect
(`ValueError`, `TypeError`, `FileNotFoundError`, `MemoryError`), so `except ValueError` works.
"""

from __future__ import annotations

# The `rlkit` command's exit codes (shared with the seeds' parent process, which reads them).
EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_OS_ERROR = 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class ConfigError(UserError, ValueError):
    """A config value is missing, unknown or out of range."""


class ConfigTypeError(ConfigError, TypeError):
    """A config value has the wrong type."""


class EnvError(UserError, ValueError):
    """The environment cannot be made or does not fit the agent."""


class DeviceError(UserError, RuntimeError):
    """The requested device is not available."""


class BufferTooLargeError(UserError, MemoryError):
    """A buffer would not fit in the memory of its device."""


class AgentFileError(UserError, ValueError):
    """A saved agent or checkpoint file is missing, corrupt or not an rlkit file."""
