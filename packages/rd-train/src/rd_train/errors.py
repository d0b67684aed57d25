"""Errors a user can cause and fix, as opposed to bugs.

Everything the command line reports as one line (``rd-train: <message>``, exit code 2) is a
`UserError`: a bad config value, a missing file, an unreadable checkpoint, a run directory that
holds another run. Each message names the key or file and says what to do. Anything else is a bug
and keeps its traceback. The subclasses also derive from the built-in exception a caller would
expect (``FileNotFoundError``, ``ValueError``), so library code can catch them either way.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: the message says what is wrong and what to do."""


class ConfigError(UserError, ValueError):
    """An invalid configuration value; the message names the dotted key."""


class ParamsError(UserError, ValueError):
    """``params.yaml`` (the sweep definition) is malformed or names something unknown."""


class MissingWeightsError(UserError, FileNotFoundError):
    """Pretrained weights that are never downloaded are not where they were looked for."""


class MissingDataError(UserError, FileNotFoundError):
    """A dataset, a config file or a run's outputs are not on disk."""


class DataMismatchError(UserError, ValueError):
    """A built dataset differs from what the run's config describes."""


class RunConflictError(UserError, ValueError):
    """A run directory already holds a run with another config."""


class CheckpointError(UserError):
    """A checkpoint file is missing, truncated, foreign or from another run."""


class StoppedError(UserError):
    """A run stopped by a signal (SIGTERM, SIGINT) before its last step; rerunning resumes it."""
