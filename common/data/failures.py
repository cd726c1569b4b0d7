"""Surviving bad files: report each once, substitute another sample, count the skips."""
import logging
import random
from typing import Callable, Dict, Tuple, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SampleError(Exception):
    """A sample that cannot be loaded, with the file's path and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class BadFileLog:
    """The files of this process that failed to load; each is logged once (WARNING)."""

    def __init__(self) -> None:
        self._reasons: Dict[str, str] = {}

    def report(self, error: SampleError) -> None:
        """Records ``error``, logging path and reason the first time the path fails."""
        if error.path not in self._reasons:
            logger.warning("skipping bad file %s: %s", error.path, error.reason)
            self._reasons[error.path] = error.reason

    def is_bad(self, path: str) -> bool:
        """Whether ``path`` already failed in this process."""
        return path in self._reasons

    def __len__(self) -> int:
        return len(self._reasons)


def load_with_substitutes(
    load: Callable[[int], T],
    index: int,
    *,
    num_items: int,
    path_of: Callable[[int], str],
    bad_files: BadFileLog,
    max_retries: int,
) -> Tuple[T, int]:
    """Loads item ``index``, replacing it by random other items while they fail.

    ``load`` raises ``SampleError`` for a bad file; files already known bad are skipped without
    another attempt. Returns ``(loaded, failures)`` where ``failures`` counts the skipped files.
    Raises RuntimeError after ``max_retries`` substitutes have failed too.
    """
    candidate = index
    failures = 0
    for _ in range(max_retries + 1):
        path = path_of(candidate)
        if not bad_files.is_bad(path):
            try:
                return load(candidate), failures
            except SampleError as error:
                bad_files.report(error)
        failures += 1
        candidate = random.randrange(num_items)
    raise RuntimeError(
        f"item {index}: {failures} files in a row failed to load (last: {path}); "
        "is the dataset readable?"
    )
