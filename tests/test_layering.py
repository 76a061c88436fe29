"""The house rules that keep normlab livable, checked on the source itself."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "normlab"


def _imports(path: Path) -> set[str]:
    """Every normlab module ``path`` imports, at any depth of the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("normlab")}


# The pipeline, bottom to top: each floor may import only floors before it (and itself).
# A folder or a top-level module each; ``__init__`` (the package's lazy facade) is the roof.
FLOORS = ["types", "errors", "registry", "seeding", "data", "models", "runtime", "spec", "train",
          "probes", "store", "experiments", "analysis", "claims", "report", "app", "cli",
          "__main__", "__init__"]  # fmt: skip


def _floor(module: str) -> str:
    """The floor of ``normlab.x.y`` (``x``); the package itself is ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _violations(floors: list[str]) -> list[str]:
    """Every import of a floor above the importing one, as "module -> module"."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        me = "__init__" if parts == ("__init__",) else parts[0]
        for name in _imports(path) - {"normlab"}:  # the package root: every import's parent
            if floors.index(_floor(name)) > floors.index(me):
                out.append(f"{'/'.join(parts)} -> {name}")
    return out


def test_every_module_sits_on_a_floor():
    tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
            if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}  # fmt: skip
    assert tops == set(FLOORS), sorted(tops ^ set(FLOORS))


def test_no_floor_imports_one_above_it():
    assert _violations(FLOORS) == []


def test_the_floor_check_can_fail():
    """Put the declarations above the trainer and the trainer's imports of them show."""
    swapped = [f for f in FLOORS if f != "spec"]
    swapped.insert(swapped.index("train") + 1, "spec")
    assert any(v.startswith("train/") and "normlab.spec" in v for v in _violations(swapped))


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [
        ("store", {"normlab.types"}),  # the store knows records, not loops or studies
        ("types.py", set()),
        ("registry.py", set()),
    ],
)
def test_lower_layers_import_nothing_above_them(folder, allowed):
    files = [SRC / folder] if folder.endswith(".py") else sorted((SRC / folder).glob("*.py"))
    for path in files:
        above = {m for m in _imports(path) if not m.startswith(f"normlab.{folder}")} - allowed
        assert not above, f"{path.name} imports {sorted(above)}"


def test_declarations_need_no_torch():
    code = "import sys, normlab.spec.study, normlab.spec.settings\n"
    code += "assert 'torch' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_analysis_and_reports_never_train():
    for folder in ("analysis", "report", "claims"):
        for path in sorted((SRC / folder).glob("*.py")):
            trains = {
                m for m in _imports(path) if m.startswith(("normlab.train", "normlab.probes"))
            }
            assert not trains, f"{folder}/{path.name} imports {sorted(trains)}"


def test_the_command_line_is_a_thin_roof():
    lines = (SRC / "cli.py").read_text().splitlines()
    assert len(lines) <= 320, len(lines)  # 300 before `report --live`


def test_importing_normlab_changes_nothing_process_wide():
    # Denormals stay unflushed and matplotlib's backend unset until an entry point acts.
    code = (
        "import matplotlib, torch\n"
        "backend = matplotlib.rcParams._get_backend_or_none()\n"
        "import normlab, normlab.runtime, normlab.train.loop, normlab.report.assets\n"
        "import normlab.app.api\n"
        "assert (torch.full((4,), 1e-39) * 1.0).ne(0).all(), 'denormals flushed on import'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend switched'\n"
        "normlab.runtime.configure()\n"
        "assert (torch.full((4,), 1e-39) * 1.0).eq(0).all(), 'configure flushes'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
