"""The errors a user fixes (a config, a file, a folder), and the stops a run explains, as opposed to bugs.

The tools print a ``UserError`` as one message and exit with status 2, a ``RunStopped`` as one
message with status 1, both without a traceback.
"""


from typing import Sequence


def some_of(names: Sequence[str], limit: int = 8) -> str:
    """``a, b, c, ... (N more)``: the first ``limit`` of ``names`` for a one-line message ("none" if empty)."""
    if not names:
        return "none"
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


class UserError(Exception):
    """A problem with what the user gave: a config key, a data folder, a checkpoint, OUTPUT_DIR."""


class DataNotFoundError(UserError, FileNotFoundError):
    """A dataset split, annotation file or checkpoint that is not where the config says."""


class RunStopped(Exception):
    """A run that cannot go on for a reason its message explains (it diverged, it stepped nothing),
    what it kept and what to do: not a bug, so no traceback."""
