"""The notebooks run top to bottom (small sizes) and are committed without outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nbformat
import pytest

from helpers.paths import REPO_ROOT

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 300  # per cell; a whole small run takes well under a minute on a free machine


def test_notebooks_exist() -> None:
    assert [p.name for p in NOTEBOOKS] == ["01_targets_and_decoding.ipynb", "02_error_breakdown.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
    assert "WBPOSE_NB_SMALL" in notebook.cells[1].source, "the first code cell holds the parameters"
    imports = {line.split()[1].split(".")[0] for cell in notebook.cells if cell.cell_type == "code"
               for line in cell.source.splitlines() if line.startswith(("import ", "from "))}  # fmt: skip
    allowed = {"wbpose", "numpy", "matplotlib", "torch", "os", "json", "tempfile", "pathlib", "collections"}
    assert imports <= allowed, f"{path.name} imports {sorted(imports - allowed)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    monkeypatch.setenv("WBPOSE_NB_SMALL", "1")
    monkeypatch.setenv("WBPOSE_NB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert not any(Path(REPO_ROOT / "notebooks").glob("*.png")), "notebooks must not write into the repository"
    assert os.listdir(tmp_path / "data"), "the synthetic data goes to WBPOSE_NB_DATA"
