"""benchmarks/record.py: a measurement record says what made its figures."""
from __future__ import annotations

import hashlib
import json
import runpy
import shutil
import subprocess
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


def test_a_results_file_the_command_did_not_write_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(RECORD["main"].__globals__, "MEASUREMENTS", tmp_path)
    results = tmp_path / "results.json"
    results.write_text('{"top1": 37.5}')  # an earlier run's figures
    (tmp_path / "demo.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"unchanged by the command .*; nothing recorded"):
        RECORD["main"](["demo", "--results-file", str(results), "--", sys.executable, "-c", "print('table')"])
    with pytest.raises(SystemExit, match=r"did not write it; nothing recorded"):
        RECORD["main"](["demo", "--results-file", str(tmp_path / "none.json"), "--", sys.executable, "-c", "0"])
    write_text = f"open({str(results)!r}, 'w').write('top1 100')"
    with pytest.raises(SystemExit, match=r"not JSON .*; nothing recorded"):
        RECORD["main"](["demo", "--results-file", str(results), "--", sys.executable, "-c", write_text])
    with pytest.raises(SystemExit, match=r"last line is not JSON: 'done'; nothing recorded"):
        RECORD["main"](["demo", "--", sys.executable, "-c", "print('done')"])
    with pytest.raises(SystemExit, match=r"cannot run no-such-command-here: .*; nothing recorded"):
        RECORD["main"](["demo", "--", "no-such-command-here"])
    assert (tmp_path / "demo.json").read_text() == "{}"  # the earlier record stays


def test_the_package_hash_changes_with_any_tracked_python_file(tmp_path, monkeypatch):
    package_hash = RECORD["package_hash"]
    before = package_hash()
    assert before is not None and len(before) == 64
    module = ROOT / "common" / "errors.py"
    copy = tmp_path / "repo"  # the hash reads the files under REPO: point it at a git copy to change one
    shutil.copytree(ROOT / "common", copy / "common")
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    subprocess.run(["git", "-C", str(copy), "add", "common"], check=True)
    monkeypatch.setitem(package_hash.__globals__, "REPO", copy)
    original = package_hash()
    (copy / "common" / "errors.py").write_text(module.read_text() + "\n# changed\n")
    assert package_hash() != original
    (copy / "common" / "errors.py").write_text(module.read_text())
    assert package_hash() == original


def test_only_code_counts_as_uncommitted_changes(tmp_path, monkeypatch):
    code_version = RECORD["code_version"]
    copy = tmp_path / "repo"
    (copy / "docs" / "measurements").mkdir(parents=True)
    (copy / "common").mkdir()
    (copy / "docs" / "measurements" / "a.json").write_text("{}")
    (copy / "common" / "x.py").write_text("x = 1\n")
    git = ["git", "-C", str(copy), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(copy)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    monkeypatch.setitem(code_version.__globals__, "REPO", copy)
    (copy / "docs" / "measurements" / "a.json").write_text('{"a": 1}')  # an earlier record of the same session
    assert code_version()["uncommitted_changes"] is False
    (copy / "common" / "x.py").write_text("x = 2\n")
    assert code_version()["uncommitted_changes"] is True
