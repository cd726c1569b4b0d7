"""The errors a user fixes (a config, a file, a folder), as opposed to bugs.

The tools print a ``UserError`` as one message and exit with status 2, without a traceback.
"""


class UserError(Exception):
    """A problem with what the user gave: a config key, a data folder, a checkpoint, OUTPUT_DIR."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset split, annotation file or checkpoint that is not where the config says."""
