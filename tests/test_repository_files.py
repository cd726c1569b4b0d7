"""What the repository holds: no build or packaging artefacts (wheels, sdists, eggs, build
outputs), neither committed nor committable by accident (``.gitignore``)."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What pip, ``python -m build`` and setuptools write, at the root and under the folders they use.
ARTEFACTS = [
    "pyflakes-4.1.0-py2.py3-none-any.whl",
    "videoconvmae-0.1.0.tar.gz",
    "dist/videoconvmae-0.1.0-py3-none-any.whl",
    "dist/videoconvmae-0.1.0.tar.gz",
    "build/lib/common/config.py",
    "build/bdist.linux-x86_64/wheel/common/__init__.py",
    "videoconvmae.egg-info/PKG-INFO",
    ".eggs/setuptools_scm-8.0.4-py3.11.egg",
    "wheelhouse/torch-2.14.1-cp311-cp311-linux_x86_64.whl",
]
ARTEFACT_PATH = re.compile(r"(^|/)(build|dist|wheelhouse|\.eggs|[^/]+\.egg-info)/|\.(whl|egg|tar\.gz)$")


def _git(*args: str) -> str:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    inside = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-inside-work-tree"],
                            capture_output=True, text=True)
    if inside.stdout.strip() != "true":
        pytest.skip("not a git checkout")
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout


def test_the_artefact_pattern_names_only_artefacts():
    assert all(ARTEFACT_PATH.search(path) for path in ARTEFACTS)
    sources = ["videoconvmae/data/build.py", "common/engine/builders.py", "setup.py", "docs/data.md"]
    assert not any(ARTEFACT_PATH.search(path) for path in sources)


def test_no_build_artefact_is_committed():
    tracked = _git("ls-files").splitlines()
    assert "setup.py" in tracked  # the listing is the repository's
    assert [path for path in tracked if ARTEFACT_PATH.search(path)] == []


def test_gitignore_keeps_build_artefacts_out():
    # --no-index: the rules themselves, whether or not such a file is tracked now.
    ignored = _git("check-ignore", "--no-index", *ARTEFACTS).splitlines()
    assert sorted(ignored) == sorted(ARTEFACTS)
    assert _git("check-ignore", "--no-index", "setup.py", "videoconvmae/data/build.py") == ""
