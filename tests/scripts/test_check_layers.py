"""The import-layer checker (``scripts/check_layers.py``) passes on the package and catches what it is for."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import pytest

from helpers.paths import REPO_ROOT, load_script

PACKAGE_DIR = REPO_ROOT / "src" / "wbpose"


def _load_checker() -> ModuleType:
    return load_script("check_layers")


check_layers = _load_checker()


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of ``src/wbpose`` under ``tmp_path/wbpose``."""
    copy = tmp_path / "wbpose"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _append(path: Path, code: str) -> int:
    """Append ``code`` to ``path``; the line number of its last line."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    text += code
    path.write_text(text, encoding="utf-8")
    return text.count("\n")


def _upward(violations: list[str]) -> list[str]:
    """The upward-import messages among ``violations`` (an upward import usually closes a cycle too)."""
    return [v for v in violations if not v.startswith("import cycle")]


def test_real_package_passes() -> None:
    assert check_layers.check(PACKAGE_DIR) == []


def test_main_prints_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert check_layers.main(["--package-dir", str(PACKAGE_DIR)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: ") and "no upward import, no cycle" in out


def test_upward_import_is_reported(package_copy: Path) -> None:
    line = _append(package_copy / "models" / "hrnet.py", "from wbpose.app.train import train  # noqa\n")
    # (the glue above imports models, so this also closes a cycle, reported on its own)
    upward = _upward(check_layers.check(package_copy))
    assert len(upward) == 1, upward
    message = upward[0]
    assert str(Path("models", "hrnet.py")) + f":{line}:" in message
    assert "wbpose.models.hrnet (layer 1 domain) imports wbpose.app.train (layer 4 app)" in message
    assert check_layers.main(["--package-dir", str(package_copy)]) == 1


def test_cycle_is_reported(package_copy: Path) -> None:
    # msra imports gaussian in the real package; gaussian importing msra closes a cycle (same layer, not upward).
    assert "wbpose.codecs.gaussian" in (package_copy / "codecs" / "msra.py").read_text(encoding="utf-8")
    _append(package_copy / "codecs" / "gaussian.py", "import wbpose.codecs.msra  # noqa\n")
    violations = check_layers.check(package_copy)
    assert len(violations) == 1, violations
    assert "cycle" in violations[0]
    assert "wbpose.codecs.gaussian, wbpose.codecs.msra" in violations[0]


def test_self_import_is_a_cycle(package_copy: Path) -> None:
    _append(package_copy / "losses.py", "from wbpose import losses  # noqa\n")
    violations = check_layers.check(package_copy)
    assert len(violations) == 1 and "cycle" in violations[0] and "wbpose.losses" in violations[0], violations


def test_type_checking_import_is_ignored(package_copy: Path) -> None:
    code = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from wbpose.engine.module import PoseModule\n"
    _append(package_copy / "models" / "hrnet.py", code)
    assert check_layers.check(package_copy) == []


def test_function_level_upward_import_is_reported(package_copy: Path) -> None:
    code = "def _late():\n    import wbpose.inference.predictor  # noqa\n\n    return wbpose.inference.predictor\n"
    line = _append(package_copy / "codecs" / "dark.py", code) - 2
    upward = _upward(check_layers.check(package_copy))
    assert len(upward) == 1, upward
    assert str(Path("codecs", "dark.py")) + f":{line}:" in upward[0]
    assert "wbpose.codecs.dark (layer 1 domain) imports wbpose.inference.predictor (layer 3 glue)" in upward[0]


def test_from_package_import_name_is_an_edge_to_its_init(package_copy: Path) -> None:
    # ``from wbpose.engine import x`` (not a submodule) is an import of ``wbpose/engine/__init__.py``.
    _append(package_copy / "build.py", "def _late():\n    from wbpose.engine import something  # noqa\n")
    violations = check_layers.check(package_copy)
    assert len(violations) == 1, violations
    assert "wbpose.build (layer 2 build) imports wbpose.engine (layer 3 glue)" in violations[0]


def test_unplaced_module_is_reported(package_copy: Path) -> None:
    (package_copy / "newpkg").mkdir()
    (package_copy / "newpkg" / "__init__.py").write_text('"""Not in the layer table yet."""\n', encoding="utf-8")
    violations = check_layers.check(package_copy)
    assert len(violations) == 1 and "wbpose.newpkg is in no layer" in violations[0], violations


DOC_PAGE = REPO_ROOT / "docs" / "architecture.md"


def _page_without(tmp_path: Path, module: str) -> Path:
    """A copy of the architecture page without the module-table row of ``module``."""
    lines = DOC_PAGE.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(f"| `{module}` |")]
    assert len(kept) == len(lines) - 1, f"expected exactly one row for {module}"
    page = tmp_path / "architecture.md"
    page.write_text("".join(kept), encoding="utf-8")
    return page


def test_real_doc_page_lists_every_module() -> None:
    assert check_layers.doc_violations(PACKAGE_DIR, DOC_PAGE) == []
    assert check_layers.check(PACKAGE_DIR, DOC_PAGE) == []


def test_module_missing_from_doc_page_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = _page_without(tmp_path, "wbpose.codecs.dark_refine")
    violations = check_layers.doc_violations(PACKAGE_DIR, page)
    assert len(violations) == 1, violations
    assert "wbpose.codecs.dark_refine is missing from the module table" in violations[0]
    assert "| `wbpose.codecs.dark_refine` | 1 domain |" in violations[0]  # the row to add, with its layer
    assert check_layers.main(["--package-dir", str(PACKAGE_DIR), "--doc", str(page)]) == 1
    assert "wbpose.codecs.dark_refine is missing" in capsys.readouterr().out


def test_doc_page_wrong_layer_and_stale_row_are_reported(tmp_path: Path) -> None:
    text = DOC_PAGE.read_text(encoding="utf-8")
    assert "| `wbpose.build` | 2 build |" in text
    text = text.replace("| `wbpose.build` | 2 build |", "| `wbpose.build` | 3 glue |")
    text += "\n| `wbpose.gone.module` | 1 domain | moved away |\n"
    page = tmp_path / "architecture.md"
    page.write_text(text, encoding="utf-8")
    violations = check_layers.doc_violations(PACKAGE_DIR, page)
    assert len(violations) == 2, violations
    assert "wbpose.build is listed in layer 3, but LAYERS places it in layer 2 build" in violations[0]
    assert "wbpose.gone.module is listed in the module table but there is no such module" in violations[1]


def test_new_module_needs_a_doc_row(package_copy: Path) -> None:
    # the copy holds conf/ as a real folder (the checkout's src/wbpose/conf is a symlink, not walked): drop it
    shutil.rmtree(package_copy / "conf")
    (package_copy / "codecs" / "simcc.py").write_text('"""A new codec."""\n', encoding="utf-8")
    assert check_layers.check(package_copy) == []  # placed by its prefix, imports fine
    violations = check_layers.check(package_copy, DOC_PAGE)
    assert len(violations) == 1 and "wbpose.codecs.simcc is missing from the module table" in violations[0]
