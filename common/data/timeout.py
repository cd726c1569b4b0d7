"""Bounding calls into native decoders that may hang."""
import threading
from typing import Callable, Dict, Generic, TypeVar

T = TypeVar("T")


class BoundedCall(Generic[T]):
    """Runs ``fn()`` in a daemon thread from construction on; ``result`` waits for it.

    A call stuck inside C code cannot be interrupted, so on timeout the thread is abandoned
    (it ends with the process).
    """

    def __init__(self, fn: Callable[[], T]) -> None:
        self._outcome: Dict[str, object] = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), name="bounded-call", daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._outcome["value"] = fn()
        except BaseException as error:  # handed to the caller of result()
            self._outcome["error"] = error

    def result(self, timeout_s: float) -> T:
        """``fn``'s return value (or its exception re-raised); TimeoutError when it has not
        finished ``timeout_s`` seconds from now (``timeout_s <= 0``: wait without bound)."""
        self._thread.join(timeout_s if timeout_s > 0 else None)
        if self._thread.is_alive():
            raise TimeoutError(f"no result after {timeout_s:g} s")
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


def call_with_timeout(fn: Callable[[], T], timeout_s: float) -> T:
    """Returns ``fn()``, or raises TimeoutError when it takes longer than ``timeout_s`` seconds
    (see ``BoundedCall``); ``timeout_s <= 0`` calls ``fn`` directly, in this thread."""
    if timeout_s <= 0:
        return fn()
    return BoundedCall(fn).result(timeout_s)
