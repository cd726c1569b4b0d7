"""The README's Python snippet of "Use a trained model" runs as written (from a folder with configs/)."""
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SECTION = "## Use a trained model: predict, extract features"


def section_python_blocks(readme: str, heading: str):
    """The ```python blocks between ``heading`` and the next second-level heading."""
    start = readme.index(heading)
    end = readme.find("\n## ", start + len(heading))
    return re.findall(r"```python\n(.*?)```", readme[start:end if end > 0 else None], flags=re.S)


def test_use_a_trained_model_snippet_runs(tmp_path, monkeypatch, capsys):
    blocks = section_python_blocks((REPO / "README.md").read_text(), SECTION)
    assert len(blocks) == 1
    os.symlink(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)
    assert scope["clips"].features.shape == (3, 128) and scope["windows"].features.shape == (3, 128)
    assert scope["run"].class_names == ["direction_000", "direction_120", "direction_240"]
    assert "direction_" in capsys.readouterr().out
