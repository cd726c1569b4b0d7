"""Result folders that say what made them: a manifest, one writer at a time, results committed whole.

The result tools (``tools/predict.py``, ``tools/extract_features.py``, ``tools/prepare_videos.py``)
write their outputs through ``OutputFolder``:

1. ``with OutputFolder(path) as out:`` before any work. The folder is created (for a single
   output file, its folder), an exclusive lock is taken (``.run.lock`` in a folder, as training
   runs lock ``OUTPUT_DIR``; ``.NAME.lock`` beside a file), so a second writer is refused with one
   line naming the first, and the temp files of killed runs (``common.files`` temp names only) are
   removed. A path that cannot be written is one line (``OutputError``) here, before any work.
2. ``out.start(manifest, overwrite=...)`` compares the run's ``Manifest`` with the saved one
   (``manifest.json`` in the folder, ``NAME.manifest.json`` beside a single file): the tool, the
   settings that change the result (model, checkpoint sha256, options) and the inputs. A
   difference is refused with one line naming it; ``overwrite`` (the tools' ``--overwrite``)
   deletes the files the saved manifest names, and only those, and starts over. Same settings:
   the run resumes. A file the run would write that exists although no saved manifest names it
   (a user's file, or one from a version without manifests) is refused the same way. The new
   manifest is saved before the work, so a killed run leaves a folder that says what it was
   being filled with.
3. ``out.commit(files, summary)`` saves the manifest again with the result files' sha256 and the
   run's summary (failed inputs among them). The manifest is the commit point of a result set of
   several files: the set is whole when every file matches the sha256 the manifest names
   (``committed_files_intact``), so a set cut between two files by a kill is never taken as done.

The code version (package version and ``git describe`` of a checkout) is recorded; a resume
with other code is logged as a warning, not refused: results do not change with every commit.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from common.config import flatten_config
from common.errors import UserError, some_of
from common.files import (LOCK_FILE, LockHeldError, atomic_write_json, exclusive_lock_or_fail,
                          remove_engine_temp_files, single_file_lock_name)

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
PACKAGE = "videoconvmae"
MANIFEST_FILE = "manifest.json"
OVERWRITE_FLAG = "--overwrite"
REPO_ROOT = Path(__file__).resolve().parents[1]


class OutputError(UserError, RuntimeError):
    """An output that cannot be written, is in use, or holds results of other settings."""


@functools.lru_cache(maxsize=None)
def _code_version() -> Tuple[Tuple[str, str], ...]:
    try:
        found = {"version": importlib.metadata.version(PACKAGE)}
    except importlib.metadata.PackageNotFoundError:
        found = {"version": "unknown"}
    git = _git_describe(REPO_ROOT)
    if git:
        found["git"] = git
    return tuple(found.items())


def code_version() -> Dict[str, str]:
    """``version`` (the installed package's) and, in a git checkout, ``git`` (``git describe --always
    --dirty --tags``)."""
    return dict(_code_version())


def _git_describe(root: Path) -> Optional[str]:
    if not (root / ".git").exists():  # an installed copy: not a checkout (or inside someone else's)
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty", "--tags"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    described = done.stdout.strip()
    return described if done.returncode == 0 and described else None


def sha256_of(path: PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Manifest:
    """What made an output folder.

    Compared on a rerun: ``tool``, ``settings`` (what changes the result; nested dicts allowed)
    and ``inputs`` (in order). Recorded: ``outputs`` (every file, relative to the folder, the
    tool writes for these settings -> the input it is made from, "" for a file made from all of
    them), ``about`` (where the model came from: paths, run folder), ``code``, and once committed
    ``files`` (result file -> sha256) and ``summary``."""

    tool: str
    settings: Dict[str, Any]
    inputs: List[str] = field(default_factory=list)
    outputs: Dict[str, str] = field(default_factory=dict)
    about: Dict[str, Any] = field(default_factory=dict)
    code: Dict[str, str] = field(default_factory=code_version)
    files: Dict[str, str] = field(default_factory=dict)
    summary: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        """The manifest saved at ``path``; ``OutputError`` naming it if it is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            manifest = cls(**data)
            if not isinstance(manifest.settings, dict) or not isinstance(manifest.outputs, dict):
                raise TypeError("settings and outputs must be objects")
        except (OSError, ValueError, TypeError) as err:
            raise OutputError(f"{path} is not a manifest this tool wrote ({err}); move the folder away or rerun "
                              f"with {OVERWRITE_FLAG}") from None
        outside = [name for name in [*manifest.outputs, *manifest.files] if not _inside(name)]
        if outside:
            raise OutputError(f"{path} names files outside its folder ({', '.join(outside[:3])}): not a manifest "
                              "this tool wrote")
        return manifest


def _inside(relative: str) -> bool:
    """True for a relative path that stays inside its folder (no absolute path, no ``..``)."""
    return not os.path.isabs(relative) and ".." not in Path(relative).parts and relative not in ("", ".")


def _plain(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def differences(saved: Manifest, now: Manifest) -> List[str]:
    """``KEY: saved A, now B`` for each setting that differs, and what changed in the inputs."""
    if saved.tool != now.tool:
        return [f"tool: saved {saved.tool!r}, now {now.tool!r}"]
    before, after = dict(flatten_config(_plain(saved.settings))), dict(flatten_config(_plain(now.settings)))
    found = [f"{key}: saved {before.get(key)!r}, now {after.get(key)!r}"
             for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)]
    if list(saved.inputs) != list(now.inputs):
        found.append(_input_changes(list(saved.inputs), list(now.inputs)))
    return found


def _input_changes(before: List[str], after: List[str]) -> str:
    old, new = set(before), set(after)
    added, removed = [p for p in after if p not in old], [p for p in before if p not in new]
    if not added and not removed:
        return "inputs: the same files in another order"
    parts = ([f"{len(added)} added ({some_of(added, 3)})"] if added else []) + \
            ([f"{len(removed)} removed ({some_of(removed, 3)})"] if removed else [])
    return "inputs: " + ", ".join(parts)


def files_match(folder: Path, files: Dict[str, str]) -> bool:
    """True when ``files`` (name -> sha256, as a manifest commits them) is not empty and every file
    is in ``folder`` with that sha256."""
    return bool(files) and all((folder / name).is_file() and sha256_of(folder / name) == digest
                               for name, digest in files.items())


class OutputFolder:
    """A tool's output (a folder, or with ``single_file`` one file), held for one run: see the
    module docstring. Use as a context manager; ``start`` then ``commit``."""

    def __init__(self, path: PathLike, *, single_file: bool = False) -> None:
        self.path = Path(path)
        self.single_file = single_file
        self.folder = self.path.parent if single_file else self.path
        name = self.path.name
        self.manifest_path = self.folder / (f"{name}.manifest.json" if single_file else MANIFEST_FILE)
        self.lock_path = self.folder / (single_file_lock_name(name) if single_file else LOCK_FILE)
        self.saved: Optional[Manifest] = None  # the manifest found at the start
        self.manifest: Optional[Manifest] = None  # this run's, once started
        self._held = ExitStack()

    def __enter__(self) -> "OutputFolder":
        self._refuse_wrong_kind()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._held.enter_context(exclusive_lock_or_fail(self.lock_path))
        except LockHeldError as err:
            raise OutputError(f"--output {self.path} is in use by another run ({err.owner}); wait for it to finish "
                              "or choose another --output") from None
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            raise OutputError(f"cannot write --output {self.path}: {err.strerror or err}{where}") from None
        try:
            targets = {self.path.name, self.manifest_path.name} if self.single_file else None
            remove_engine_temp_files(self.folder, recursive=not self.single_file, targets=targets)
            if self.manifest_path.is_file():
                self.saved = Manifest.read(self.manifest_path)
        except BaseException:
            self._held.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._held.close()

    def _refuse_wrong_kind(self) -> None:
        if self.single_file and self.path.is_dir():
            raise OutputError(f"cannot write --output {self.path}: it is a directory; give a file name, e.g. "
                              f"{self.path / 'predictions.jsonl'}")
        for folder in [self.folder, *self.folder.parents]:
            if os.path.lexists(folder):
                if not folder.is_dir():
                    raise OutputError(f"cannot write --output {self.path}: {folder} is not a directory")
                return

    def start(self, manifest: Manifest, *, overwrite: bool) -> bool:
        """Compare ``manifest`` with the saved one and save it (see the module docstring); True when
        the run resumes the saved one (its outputs and committed files may be reused)."""
        saved = self.saved
        resumed = saved is not None and not overwrite
        if resumed:
            changed = differences(saved, manifest)
            if changed:
                raise OutputError(f"--output {self.path} holds results of other settings ({'; '.join(changed)}); "
                                  f"rerun with {OVERWRITE_FLAG} to replace them (only the files its "
                                  f"{self.manifest_path.name} names are deleted) or choose another --output")
            self._warn_if_other_code(saved, manifest)
        if overwrite:
            self._delete([*(saved.outputs if saved else {}), *(saved.files if saved else {}), *manifest.outputs],
                         why=f"{OVERWRITE_FLAG}: starting over")
        else:
            self._refuse_foreign(manifest, saved.outputs if saved else {})
        if resumed:
            self._delete([name for name, source in manifest.outputs.items()
                          if name in saved.outputs and saved.outputs[name] != source],
                         why="made from another input than now")
            manifest.outputs = {**saved.outputs, **manifest.outputs}
            manifest.files, manifest.summary = dict(saved.files), dict(saved.summary)
        self.manifest = manifest
        self._save()
        return resumed

    def _refuse_foreign(self, manifest: Manifest, owned: Dict[str, str]) -> None:
        foreign = [name for name in manifest.outputs if name not in owned and os.path.lexists(self.folder / name)]
        if foreign:
            name = self.manifest_path.name
            where = f"its {name} does not name them" if self.saved else f"there is no {name}"
            held = some_of([str(self.folder / n) for n in foreign], 3)
            raise OutputError(f"--output {self.path} already holds {held}, "
                              f"not written by {manifest.tool} ({where}); move them away or rerun with "
                              f"{OVERWRITE_FLAG} to replace them")

    def _warn_if_other_code(self, saved: Manifest, manifest: Manifest) -> None:
        if saved.code != manifest.code:
            logger.warning("%s was started by code %s, this run is code %s: results of both are kept",
                           self.path, saved.code, manifest.code)

    def _delete(self, names: Sequence[str], *, why: str) -> None:
        deleted = []
        for name in dict.fromkeys(names):
            path = self.folder / name
            if os.path.lexists(path) and not path.is_dir():
                path.unlink()  # a link is removed, never followed
                deleted.append(name)
        if deleted:
            logger.warning("%s: deleted %s in %s", why, some_of(deleted, 3), self.folder)

    def committed_files_intact(self) -> bool:
        """True when the result files the manifest names are all there with their sha256."""
        return files_match(self.folder, self.manifest.files if self.manifest else {})

    def commit(self, files: Sequence[str], summary: Dict[str, Any]) -> None:
        """Name ``files`` (relative to the folder) with their sha256 and ``summary`` in the manifest,
        saved last: from now on the result set is the committed one."""
        self.manifest.files = {name: sha256_of(self.folder / name) for name in files}
        self.manifest.summary = summary
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.manifest_path, asdict(self.manifest), indent=1)
