"""Process-wide settings the package makes on import."""
import os
import subprocess
import sys

REPORT = "import os, common; print(os.environ['THP_MEM_ALLOC_ENABLE'])"


def _thp_setting_after_import(**env):
    run_env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"} | env
    result = subprocess.run([sys.executable, "-c", REPORT], env=run_env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_importing_common_turns_on_huge_pages_for_large_cpu_tensors():
    assert _thp_setting_after_import() == "1"


def test_an_explicit_huge_page_setting_wins():
    assert _thp_setting_after_import(THP_MEM_ALLOC_ENABLE="0") == "0"
