"""The README stays a front page that tells the truth: short, every command it shows answers
``--help``, every figure it quotes equals the measurement record named beside it
(``benchmarks/record.py``), whose command the README shows, made with the current version of
that command's script."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MEASUREMENTS = ROOT / "docs" / "measurements"
MAX_LINES = 200
# The last cell of a figure row of a README table: `NAME.KEY` (docs/measurements/NAME.json).
RECORD_REF = re.compile(r"`([a-z0-9_]+)\.([A-Za-z0-9_.]+)`")
NUMBER = re.compile(r"[-+]?\d+(?:\.(\d+))?")
# Commands a reader copies: `python tools/X.py`, `python benchmarks/X.py`, `torchrun ... tools/X.py`.
SCRIPT = re.compile(r"(?:^|\s|`)(?:python|torchrun[^`\n]*?)\s+((?:tools|benchmarks)/[a-z_]+\.py)")


class Figure(NamedTuple):
    shown: str  # the value cell as the README shows it
    record: str
    key: str


def readme_scripts(markdown: str) -> List[str]:
    """Every tool or benchmark script a command of ``markdown`` runs, once each, in order."""
    return list(dict.fromkeys(SCRIPT.findall(markdown)))


def table_figures(markdown: str) -> List[Figure]:
    """The table rows ``| what | value | `record.key` |`` of ``markdown``."""
    figures = []
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and RECORD_REF.fullmatch(cells[-1]):
            record, key = RECORD_REF.fullmatch(cells[-1]).groups()
            figures.append(Figure(cells[-2], record, key))
    return figures


def shown_value(cell: str) -> Tuple[float, int]:
    """The number of a value cell (``**0.27**``, ``100.0 %``, ``6 min``) and its decimals."""
    match = NUMBER.search(cell.replace("**", ""))
    assert match, f"no number in figure cell {cell!r}"
    return float(match.group(0)), len(match.group(1) or "")


def figure_of(record: Dict, key: str) -> float:
    """``record["figures"]`` at the dotted ``key``."""
    value = record["figures"]
    for part in key.split("."):
        value = value[part]
    return float(value)


def test_the_helpers_read_what_they_should():
    assert readme_scripts("    python tools/demo.py\n`torchrun --nproc_per_node=8 tools/pretrain.py --cfg X`"
                          "\n    python benchmarks/record.py a -- python tools/demo.py") == [
        "tools/demo.py", "tools/pretrain.py", "benchmarks/record.py"]
    row = "| video sparse / dense step | **0.27** | `pretrain_step.a.b` |"
    assert table_figures(row + "\n| plain | table | row |") == [Figure("**0.27**", "pretrain_step", "a.b")]
    assert shown_value("**1.472** -> 0.3") == (1.472, 3) and shown_value("100 %") == (100.0, 0)
    assert figure_of({"figures": {"a": {"b": 2}}}, "a.b") == 2.0


def test_the_readme_is_a_front_page():
    lines = README.splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; move details to docs/ (at most {MAX_LINES})"
    headings = [line for line in lines if line.startswith("## ")]
    # What a newcomer needs first comes first: the two commands, then their own videos.
    assert headings[:2] == ["## Quick start", "## Your own videos"], headings
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "python tools/demo.py" in quick_start and "python -m pytest -q tests" in quick_start


def test_the_test_command_is_the_one_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q tests" in ci and "python -m pytest -q tests" in README


@pytest.mark.slow
@pytest.mark.parametrize("script", readme_scripts(README))
def test_every_readme_command_answers_help(script):
    assert (ROOT / script).is_file(), f"the README runs {script}, which does not exist"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]


FIGURES = table_figures(README)


def test_the_readme_quotes_recorded_figures():
    assert len(FIGURES) >= 5, "the README's figure tables lost their record references"


@pytest.mark.parametrize("figure", FIGURES, ids=[f"{f.record}.{f.key}" for f in FIGURES])
def test_every_readme_figure_is_its_records(figure):
    path = MEASUREMENTS / f"{figure.record}.json"
    assert path.is_file(), f"the README quotes {figure.record}.{figure.key} but {path} does not exist"
    record = json.loads(path.read_text())
    assert f"`{record['command']}`" in README, f"the README does not show the command that made {path}: {record['command']}"
    value, decimals = shown_value(figure.shown)
    assert value == round(figure_of(record, figure.key), decimals), (figure, figure_of(record, figure.key))
    # The script that printed it is the current one (rerun it and record again after changing it).
    for script, sha256 in record["code"]["scripts_sha256"].items():
        assert hashlib.sha256((ROOT / script).read_bytes()).hexdigest() == sha256, (
            f"{script} changed since {path} was recorded: rerun `python benchmarks/record.py {figure.record} -- "
            f"{record['command']}`")
    assert shlex.split(record["command"])[1] in record["code"]["scripts_sha256"]
