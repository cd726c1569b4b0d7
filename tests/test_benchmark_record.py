"""benchmarks/record.py: a measurement record says what made its figures."""
from __future__ import annotations

import hashlib
import json
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECORD = runpy.run_path(str(ROOT / "benchmarks" / "record.py"), run_name="benchmarks_record")


def test_last_json_line_takes_the_last_line_as_an_object():
    assert RECORD["last_json_line"]("step 1\nstep 2\n{\"a\": 1.5}\n\n") == {"a": 1.5}
    for output, message in (("", "printed nothing"), ("done\n", "not JSON"), ("[1, 2]\n", "not an object")):
        with pytest.raises(ValueError, match=message):
            RECORD["last_json_line"](output)


def test_a_record_names_the_command_the_script_the_machine_and_the_figures(tmp_path, monkeypatch, capsys):
    script = ROOT / "benchmarks" / "record.py"  # any script of the repository: its hash is recorded
    monkeypatch.setitem(RECORD["main"].__globals__, "MEASUREMENTS", tmp_path)
    code = "print('working'); print('{\"ratio\": 0.25}')"
    RECORD["main"](["toy", "--", sys.executable, "-c", code, str(script.relative_to(ROOT))])
    assert "working" in capsys.readouterr().out  # the command's output is shown as it comes
    record = json.loads((tmp_path / "toy.json").read_text())
    assert record["name"] == "toy" and record["figures"] == {"ratio": 0.25}
    assert record["command"].startswith(sys.executable) and record["command"].endswith("benchmarks/record.py")
    assert record["code"]["scripts_sha256"] == {"benchmarks/record.py": hashlib.sha256(script.read_bytes()).hexdigest()}
    assert record["machine"]["cores"] >= 1 and len(record["load_average"]["before"]) == 3
    assert record["code"]["torch"]


def test_figures_can_come_from_a_results_file(tmp_path, monkeypatch):
    monkeypatch.setitem(RECORD["main"].__globals__, "MEASUREMENTS", tmp_path)
    results = tmp_path / "results.json"
    code = f"import json; json.dump({{'top1': 100.0}}, open({str(results)!r}, 'w')); print('table')"
    RECORD["main"](["demo", "--results-file", str(results), "--", sys.executable, "-c", code])
    assert json.loads((tmp_path / "demo.json").read_text())["figures"] == {"top1": 100.0}


def test_a_failing_command_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(RECORD["main"].__globals__, "MEASUREMENTS", tmp_path)
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(SystemExit, match="exited with status 3; nothing recorded"):
        RECORD["main"](["old", "--", sys.executable, "-c", "import sys; sys.exit(3)"])
    assert (tmp_path / "old.json").read_text() == "{}"
    with pytest.raises(SystemExit):
        RECORD["main"](["Bad-Name", "--", "true"])
