"""Writing files safely: one atomic writer, files opened without following links, folders built whole.

Every file the engine writes in one go (checkpoints, results, the resolved config) goes through
``atomic_write``: a temp file in the same folder, named by ``temp_path`` in a scheme only the
engine uses (``.NAME.PID.RANDOM.engine-tmp``), fsynced and renamed over the final name. A crash
leaves the old file or the new one, never half of one, and the start-up clean-up
(``is_engine_temp``) can tell a temp file the engine left behind from a user's ``paper.tex.tmp.1``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Collection, Iterator, List, Optional, TextIO, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
TEMP_SUFFIX = ".engine-tmp"
LOCK_FILE = ".run.lock"  # one writer per output folder: training runs and the result tools lock the same name
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.\d+\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")
# Created files get 0o666 minus the umask, like every other file of the run (mkstemp's 0o600 did not).
_FILE_MODE = 0o666


def temp_path(path: PathLike) -> Path:
    """A fresh temp name beside ``path`` in the engine's scheme: ``.NAME.PID.RANDOM.engine-tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_engine_temp(name: str) -> bool:
    """True for a name ``temp_path`` makes (and no other)."""
    return bool(_TEMP_NAME.match(name))


def temp_target(name: str) -> Optional[str]:
    """The name a temp name of ``temp_path`` stands for (``NAME`` of ``.NAME.PID.RANDOM.engine-tmp``),
    else None."""
    match = _TEMP_NAME.match(name)
    return match.group("target") if match else None


def single_file_lock_name(name: str) -> str:
    """The lock file beside a single-file output ``name`` (``.NAME.lock``)."""
    return f".{name}.lock"


def remove_engine_temp_files(folder: PathLike, *, recursive: bool = False,
                             targets: Optional[Collection[str]] = None) -> List[str]:
    """Delete the temp files of ``atomic_write`` that killed processes left in ``folder`` (in its
    subfolders too with ``recursive``; only those standing for ``targets`` when given): files with
    the engine's temp names only, never through a link. The caller holds the folder's lock, so no
    live writer of its own kind owns them; what other runs own is left alone: a subfolder with a
    lock file of its own (a training run's ``OUTPUT_DIR``, another tool's output) and, without
    ``targets``, a file whose single-file output lock (``.NAME.lock``) is beside it. Returns the
    paths removed."""
    removed = []
    for root, dirs, files in os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]:
        dirs[:] = [d for d in dirs if not os.path.lexists(os.path.join(root, d, LOCK_FILE))]
        for name in files:
            path = os.path.join(root, name)
            target = temp_target(name)
            if target is None or (targets is not None and target not in targets):
                continue
            if targets is None and os.path.lexists(os.path.join(root, single_file_lock_name(target))):
                continue  # a tool writing that one file owns it
            if os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(path)
                logger.warning("removed %s, left half-written by a run that was killed", path)
    return sorted(removed)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` through ``write(binary_file)`` so that a crash leaves the old file or the new
    one, never half: temp file beside it (created exclusively, never through a link), fsync,
    rename, fsync of the folder. On any error the temp file is removed and the error raised: the
    error of the file itself (``OSError`` for a full disk, ``KeyboardInterrupt``), also when
    ``write`` runs in C++ that turned it into another (``torch.save``: ``RuntimeError``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_reporting_file_errors(f, write)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


class _ErrorRecordingFile:
    """A binary file that remembers the first exception its ``write`` raised, so that the caller
    can raise that one when a C++ writer around it replaced it by its own."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.error: Optional[BaseException] = None

    def write(self, data) -> int:
        try:
            return self._file.write(data)
        except BaseException as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def _write_reporting_file_errors(f: BinaryIO, write: Callable[[BinaryIO], None]) -> None:
    recording = _ErrorRecordingFile(f)
    try:
        write(recording)  # type: ignore[arg-type]
    except BaseException as err:
        if recording.error is not None and recording.error is not err:
            raise recording.error from err
        raise


def atomic_write_text(path: PathLike, text: str) -> None:
    """``atomic_write`` of ``text`` (UTF-8, newlines as given)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def json_text(obj: Any, *, indent: Optional[int] = None) -> str:
    """``obj`` as strict JSON: a NaN or infinity (which ``json`` would write as the invalid
    ``NaN``/``Infinity``) raises ValueError instead of making a file other readers reject."""
    return json.dumps(obj, indent=indent, allow_nan=False)


def atomic_write_json(path: PathLike, obj: Any, *, indent: Optional[int] = None) -> None:
    """``atomic_write_text`` of ``json_text(obj)`` and a newline."""
    atomic_write_text(path, json_text(obj, indent=indent) + "\n")


def open_no_follow(path: PathLike, flags: int, mode: int = _FILE_MODE) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (``O_NOFOLLOW``) with an error naming it,
    so a link planted in a shared folder cannot make the run write to a file of its choosing."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link; the engine does not write through links", str(path)) from None
        raise


def open_append_text(path: PathLike) -> TextIO:
    """``path`` opened for appending text (created if missing), never through a symbolic link."""
    fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8")


class LockHeldError(RuntimeError):
    """Another process holds the lock; ``owner`` is what it wrote in the lock file ("pid N on HOST")."""

    def __init__(self, path: PathLike, owner: str) -> None:
        super().__init__(f"{path} is held by {owner}")
        self.owner = owner


@contextmanager
def exclusive_lock_or_fail(path: PathLike) -> Iterator[int]:
    """Hold an ``flock`` on the lock file ``path`` (created, never through a link) without waiting:
    ``LockHeldError`` naming the holder when another process has it. The holder's pid and host are
    written into the file for that message. The kernel releases the lock when the process dies,
    so a killed process leaves no stale lock. Yields the file's fd."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            raise LockHeldError(path, owner) from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def exclusive_lock(path: PathLike) -> Iterator[int]:
    """Hold a blocking ``flock`` on the lock file ``path`` (created, never through a link); yields its fd."""
    fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def build_folder_atomically(folder: PathLike, build: Callable[[Path], None]) -> bool:
    """Create ``folder`` whole or not at all; returns False if it already exists.

    ``build(target)`` must create ``target`` (a path inside a temp folder beside ``folder``) and
    fill it; only when it returns is ``target`` renamed to ``folder``. A kill during ``build``
    leaves a temp folder, never a half-filled ``folder``; the next call removes it. Callers
    serialise on the lock file ``.NAME.lock`` beside ``folder``, so two runs never build at once.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder.with_name(f".{folder.name}.lock")):
        if folder.exists():
            return False
        _remove_stale_builds(folder)
        staging = temp_path(folder)
        staging.mkdir()
        try:
            build(staging / folder.name)
            os.rename(staging / folder.name, folder)
            _fsync_folder(folder.parent)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return True


def _remove_stale_builds(folder: Path) -> None:
    """Temp folders of ``build_folder_atomically`` for ``folder`` (the caller holds the lock, so
    any that exist belong to a process that was killed)."""
    for stale in folder.parent.glob(f".{folder.name}.*{TEMP_SUFFIX}"):
        if is_engine_temp(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
            logger.warning("removed %s, left half-built by a process that was killed", stale)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_lines(path: Path) -> list:
    """Records of a JSON-lines log (one JSON object per line, blank lines skipped). A line that is not
    JSON (a record cut by a kill or a full disk) is skipped with a warning naming the file and line."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                logger.warning("%s, line %d: not a JSON record (cut by a kill?): skipped", path, number)
    return records
