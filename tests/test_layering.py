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
        "import normlab.experiments.api\n"
        "assert (torch.full((4,), 1e-39) * 1.0).ne(0).all(), 'denormals flushed on import'\n"
        "assert matplotlib.rcParams._get_backend_or_none() == backend, 'backend switched'\n"
        "normlab.runtime.configure()\n"
        "assert (torch.full((4,), 1e-39) * 1.0).eq(0).all(), 'configure flushes'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
