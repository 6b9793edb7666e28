"""No layer imports one above it: models < identifiability < evaluation < report.

Every ``.py`` file of a layer's folder is parsed (imports inside functions too);
a test fails naming the file, the line and the import.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Folder of a layer -> the packages it must not import.
FORBIDDEN = {
    "models": ("bnncat.identifiability", "bnncat.evaluation", "bnncat.report"),
    "identifiability": ("bnncat.evaluation", "bnncat.report"),
    "bnncat/evaluation": ("bnncat.report",),
}
#: Names of the package root that load a layer (``from bnncat import diagnose``).
ROOT_ALIASES = {"diagnose": "bnncat.report", "DiagnosticReport": "bnncat.report"}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """Every module an AST imports, with its line (``from a import b`` gives ``a.b`` too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if node.module == "bnncat":
                    name = ROOT_ALIASES.get(alias.name, name)
                found.append((node.lineno, name))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, name in imported_modules(tree):
            for package in forbidden:
                if _within(name, package):
                    out.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({package})")
    return sorted(set(out))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(folder):
    assert (ROOT / folder).is_dir(), folder
    found = violations(folder, FORBIDDEN[folder])
    assert not found, "imports across layers:\n" + "\n".join(found)


def test_the_check_sees_every_form_of_import():
    source = (
        "import bnncat.report\n"
        "from bnncat.evaluation.density import predictive_density\n"
        "from bnncat import evaluation\n"
        "from bnncat import diagnose\n"
        "def f():\n"
        "    import bnncat.report.verdict as v\n"
    )
    names = {name for _, name in imported_modules(ast.parse(source))}
    assert {"bnncat.report", "bnncat.evaluation.density", "bnncat.evaluation"} <= names
    assert "bnncat.report.verdict" in names
    assert ROOT_ALIASES["diagnose"] in names
    assert not any(_within(n, "bnncat.report") for n in ("bnncat.reports", "bnncat.models"))
