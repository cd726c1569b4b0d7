"""The architecture's import rules, checked on the source: ``common`` never imports a modality
package, and only the engine imports the engine."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODALITY_PACKAGES = ("imageconvmae", "videoconvmae")


def imported_modules(path: Path):
    """Every module an ``import`` / ``from ... import`` statement of ``path`` names (any depth)."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_common_never_imports_a_modality_package():
    offenders = [(str(p.relative_to(REPO)), m) for p in (REPO / "common").rglob("*.py")
                 for m in imported_modules(p) if m.split(".")[0] in MODALITY_PACKAGES]
    assert offenders == []


def test_only_the_engine_imports_the_engine():
    engine = REPO / "common" / "engine"
    offenders = [(str(p.relative_to(REPO)), m) for p in (REPO / "common").rglob("*.py")
                 if engine not in p.parents
                 for m in imported_modules(p) if m == "common.engine" or m.startswith("common.engine.")]
    assert offenders == []


def test_no_model_name_prefix_decides_the_modality():
    sources = {p: p.read_text() for p in (REPO / "common").rglob("*.py")}
    assert [str(p) for p, text in sources.items() if 'startswith("video' in text or '== "imagenet"' in text] == []
