"""Process-wide settings: none on import; the entry points' settings in ``configure_process``."""
import os
import subprocess
import sys

THP = "THP_MEM_ALLOC_ENABLE"
AFTER_IMPORT = f"import os, common, common.engine.jobs, videoconvmae.modality; print(os.environ.get('{THP}', 'unset'))"
AFTER_CONFIGURE = ("import os; from common.process_settings import configure_process; configure_process(); "
                   f"print(os.environ['{THP}'])")


def _run(code: str, **env) -> str:
    run_env = {k: v for k, v in os.environ.items() if k != THP} | env
    return subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_the_library_changes_no_process_setting():
    assert _run(AFTER_IMPORT) == "unset"


def test_entry_points_turn_on_huge_pages_for_large_cpu_tensors():
    assert _run(AFTER_CONFIGURE) == "1"


def test_an_explicit_huge_page_setting_wins():
    assert _run(AFTER_CONFIGURE, **{THP: "0"}) == "0"


def test_the_tools_and_benchmarks_configure_the_process():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path in ["common/engine/cli.py", "tools/demo.py", *sorted(f"benchmarks/{name}" for name in
                                                                   os.listdir(os.path.join(repo, "benchmarks"))
                                                                   if name.endswith(".py") and name != "__init__.py")]:
        with open(os.path.join(repo, path)) as f:
            assert "configure_process()" in f.read(), path
