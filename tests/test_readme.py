"""Every ```python block of README.md, and of the docs whose examples moved there from the README
(docs/models.md, docs/inference.md), runs as written: standalone, in a fresh interpreter, from a
folder that looks like a checkout to it (``configs/`` linked in, nothing else), with only the
repository on the path; what a block writes stays in that temp folder."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
TIMEOUT_S = 300  # a base-width model on a shared 2-core CPU; the blocks take seconds unloaded


def python_blocks(markdown: str) -> list:
    """The code of each ```python fenced block, in order."""
    return BLOCK.findall(markdown)


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


RUNNABLE_DOCS = ("README.md", "docs/models.md", "docs/inference.md")
README_BLOCKS = python_blocks((ROOT / "README.md").read_text())
DOC_BLOCKS = [(doc, i + 1, code) for doc in RUNNABLE_DOCS for i, code in enumerate(python_blocks((ROOT / doc).read_text()))]


def test_the_readme_has_python_blocks_and_they_are_extracted_whole():
    assert README_BLOCKS, "README.md has no ```python block"
    markdown = "text\n```python\nx = 1\n\ny = 2\n```\n```bash\nls\n```\n```python\nz = 3\n```\n"
    assert python_blocks(markdown) == ["x = 1\n\ny = 2\n", "z = 3\n"]


def test_a_raising_block_is_reported(tmp_path):
    assert run_block("import sys\nsys.exit(0)", tmp_path).returncode == 0
    failed = run_block("x = 1\nraise NameError('clips')", tmp_path)
    assert failed.returncode != 0 and "NameError: clips" in failed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("doc, number, code", DOC_BLOCKS, ids=[f"{doc}:block{n}" for doc, n, _ in DOC_BLOCKS])
def test_readme_python_block_runs(doc, number, code, tmp_path):
    os.symlink(ROOT / "configs", tmp_path / "configs")  # the README's commands run from the repo root
    result = run_block(code, tmp_path)
    assert result.returncode == 0, f"{doc} block {number} failed:\n{code}\n--- stderr ---\n{result.stderr[-3000:]}"
