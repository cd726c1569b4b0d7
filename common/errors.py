"""The errors a user fixes (a config, a file, a folder), and the stops a run explains, as opposed to bugs.

The tools print a ``UserError`` as one message and exit with status 2, a ``RunStopped`` as one
message with status 1, both without a traceback.
"""


class UserError(Exception):
    """A problem with what the user gave: a config key, a data folder, a checkpoint, OUTPUT_DIR."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset split, annotation file or checkpoint that is not where the config says."""


class RunStopped(Exception):
    """A run that cannot go on for a reason its message explains (it diverged, it stepped nothing),
    what it kept and what to do: not a bug, so no traceback."""
