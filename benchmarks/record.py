"""Run a benchmark (or the demo) and keep what it printed as a measurement record.

Every figure the README and docs/performance.md quote comes from one of these records, so it
can say what made it: ``docs/measurements/NAME.json`` holds the command, the figures (the
command's last output line, one JSON object, or the JSON file given by ``--results-file``), the
code (commit, uncommitted changes or not, torch version, the sha256 of the script it ran and one
sha256 of the package's tracked Python files, which also names an uncommitted tree), the machine
(CPU model, cores, memory) and the load average around the run. ``tests/test_readme_front_page.py``
checks that every figure the README quotes equals its record and that the script that printed it
is unchanged. A results file must be written by the command (an older one is refused), and every
refusal is one line; nothing is recorded then and an earlier record stays.

Usage (from the repository root):
    python benchmarks/record.py pretrain_step -- python benchmarks/pretrain_step.py --batch 2
    python benchmarks/record.py demo --results-file /tmp/demo/demo_results.json -- \
        python tools/demo.py --output-dir /tmp/demo
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.files import atomic_write_json  # noqa: E402
from common.process_settings import configure_process  # noqa: E402

MEASUREMENTS_FOLDER = "docs/measurements"  # relative to the repository
MEASUREMENTS = REPO / MEASUREMENTS_FOLDER
NAME = re.compile(r"^[a-z0-9_]+$")


def last_json_line(output: str) -> Dict[str, Any]:
    """The last non-empty line of ``output`` as a JSON object; ``ValueError`` saying what it was."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the command printed nothing")
    try:
        figures = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ValueError(f"the command's last line is not JSON: {lines[-1][:200]!r}") from None
    if not isinstance(figures, dict):
        raise ValueError(f"the command's last line is JSON but not an object: {lines[-1][:200]!r}")
    return figures


def machine() -> Dict[str, Any]:
    """CPU model, logical cores and memory of this machine (Linux /proc; what else is known elsewhere)."""
    info: Dict[str, Any] = {"platform": platform.platform(), "cores": os.cpu_count()}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.M)
        info["cpu"] = models[0].strip() if models else platform.processor()
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(re.search(r"^MemTotal:\s*(\d+)", meminfo.read_text(), flags=re.M).group(1))
        info["memory_gib"] = round(total_kb / 2 ** 20, 1)
    return info


def code_version() -> Dict[str, Any]:
    """The commit the figures were measured on, whether the tree had uncommitted changes (outside
    the records' folder), torch."""
    import torch

    def git(*args: str) -> Optional[str]:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    # The records themselves are not code: a run of several records in a row stays "committed".
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", f":!{MEASUREMENTS_FOLDER}")
    return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(status) if status is not None else None,
            "torch": torch.__version__}


def script_hashes(command: Sequence[str]) -> Dict[str, str]:
    """sha256 of each file of the repository the command names (the benchmark or tool it runs): a
    figure is the current code's as long as these files are unchanged."""
    hashes = {}
    for arg in command:
        path = (REPO / arg).resolve()
        if path.suffix == ".py" and path.is_file() and REPO in path.parents:
            hashes[str(path.relative_to(REPO))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


PACKAGE_FOLDERS = ("common", "imageconvmae", "videoconvmae", "tools", "benchmarks")


def package_hash() -> Optional[str]:
    """One sha256 over the path and content of every Python file git tracks in the package folders
    (as they are on disk, uncommitted changes included); None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", *PACKAGE_FOLDERS], cwd=REPO, capture_output=True,
                                check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        return None
    digest = hashlib.sha256()
    for name in sorted(name for name in listed if name.endswith(".py") and (REPO / name).is_file()):
        digest.update(name.encode() + b"\0" + hashlib.sha256((REPO / name).read_bytes()).digest())
    return digest.hexdigest()


def file_stamp(path: Optional[str]) -> Optional[tuple]:
    """(modification time in ns, size) of ``path``, or None when there is no such file."""
    try:
        stat = os.stat(path) if path else None
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size) if stat else None


def read_results_file(path: str, stamp_before: Optional[tuple]) -> Dict[str, Any]:
    """The JSON object in ``path``, which the command must have written; ``ValueError`` otherwise."""
    stamp = file_stamp(path)
    if stamp is None:
        raise ValueError(f"--results-file {path}: the command did not write it")
    if stamp == stamp_before:
        raise ValueError(f"--results-file {path}: unchanged by the command (figures of an earlier run); "
                         f"give the file the command writes, or remove the old one")
    try:
        figures = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"--results-file {path}: not JSON ({error})") from None
    if not isinstance(figures, dict):
        raise ValueError(f"--results-file {path}: JSON but not an object")
    return figures


def load_average() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_echoing(command: Sequence[str]) -> str:
    """Run ``command`` from the repository root, echoing its output as it comes; returns the output.
    A failing command ends this one with its status (nothing is recorded)."""
    lines: List[str] = []
    try:
        process = subprocess.Popen(list(command), cwd=REPO, stdout=subprocess.PIPE, text=True)
    except OSError as error:
        raise SystemExit(f"error: cannot run {shlex.join(command)}: {error.strerror}; nothing recorded") from None
    with process:
        for line in process.stdout:
            sys.stdout.write(line)
            lines.append(line)
    if process.returncode != 0:
        raise SystemExit(f"error: {shlex.join(command)} exited with status {process.returncode}; nothing recorded")
    return "".join(lines)


def record(name: str, command: Sequence[str], *, results_file: Optional[str] = None) -> Dict[str, Any]:
    """Run ``command``, echoing its output, and return the record of what it measured."""
    # The code as the command starts (what made the figures), not as it is when the command ends.
    code = {**code_version(), "scripts_sha256": script_hashes(command), "package_sha256": package_hash()}
    load_before, start, stamp_before = load_average(), time.time(), file_stamp(results_file)
    output = run_echoing(command)
    try:
        figures = read_results_file(results_file, stamp_before) if results_file else last_json_line(output)
    except ValueError as error:
        raise SystemExit(f"error: {error}; nothing recorded") from None
    return {
        "name": name,
        "command": shlex.join(command),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - start, 1),
        "load_average": {"before": load_before, "after": load_average()},
        "machine": machine(),
        "code": code,
        "figures": figures,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    configure_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options, command = argv[:split], argv[split + 1:]
    parser = argparse.ArgumentParser(usage="python benchmarks/record.py NAME [--results-file FILE] -- COMMAND ...",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Example: python benchmarks/record.py pretrain_step -- "
                                            "python benchmarks/pretrain_step.py --batch 2")
    parser.add_argument("name", help="record name (docs/measurements/NAME.json): lower-case letters, digits, _")
    parser.add_argument("--results-file", help="read the figures from this JSON file the command writes, "
                                               "instead of its last output line")
    args = parser.parse_args(options)
    if not NAME.match(args.name):
        parser.error(f"name {args.name!r}: expected lower-case letters, digits and _")
    if not command:
        parser.error("give the command to run after --")
    result = record(args.name, command, results_file=args.results_file)
    MEASUREMENTS.mkdir(parents=True, exist_ok=True)
    path = MEASUREMENTS / f"{args.name}.json"
    atomic_write_json(path, result, indent=2)
    print(f"recorded {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
