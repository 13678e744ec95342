"""``tests/`` mirrors ``src/wbpose/``: a folder of tests per package, a ``tests/test_<module>.py`` per top-level module.

Beside the mirror there are a few folders with other roles (:data:`OTHER_FOLDERS`); every helper module lives in
``tests/helpers/`` and every data file in ``tests/fixtures/``. :func:`layout_problems` lists what breaks these rules;
it is run on the real tree and on a small made-up one with one break of each kind.
"""

from __future__ import annotations

from pathlib import Path

from helpers.paths import REPO_ROOT

#: Top-level folders of ``tests/`` that are not a package of ``src/wbpose``, and what each holds.
OTHER_FOLDERS = {
    "integration": "end-to-end runs across packages (commands, training, resume, faults)",
    "helpers": "every shared helper and fake (imported as ``helpers.<name>``)",
    "fixtures": "committed data files (read through ``helpers.paths.FIXTURE_DIR``)",
    "benchmarks": "tests of the ``benchmarks/`` scripts",
    "scripts": "tests of the ``scripts/`` dev tools that are not commands (``scripts/check_layers.py``)",
}
#: Top-level ``tests/test_<name>.py`` files with no module ``src/wbpose/<name>.py``, and why.
OTHER_TOP_LEVEL_TESTS = {
    "test_layout_of_tests.py": "checks the layout of tests/ itself",
}
#: Python files of ``tests/`` that are neither tests nor helpers.
CONFTEST = "conftest.py"


def _visible(path: Path) -> bool:
    return not any(part == "__pycache__" or part.startswith(".") for part in path.parts)


def layout_problems(tests_root: Path, package_root: Path) -> list[str]:
    """Every break of the layout rules in ``tests_root`` against the package at ``package_root``, one line each."""
    problems = []
    for path in sorted(p for p in tests_root.rglob("*") if _visible(p.relative_to(tests_root))):
        rel = path.relative_to(tests_root)
        top = rel.parts[0]
        if path.is_dir():
            if top in OTHER_FOLDERS:
                if len(rel.parts) > 1 and top in ("helpers", "fixtures"):
                    continue  # free to organise inside
                if len(rel.parts) > 1:
                    problems.append(f"{rel}/: a sub-folder of tests/{top}/ (keep it flat)")
            elif not (package_root / rel / "__init__.py").is_file():
                problems.append(
                    f"{rel}/: no package src/{package_root.name}/{rel.as_posix()} (and not one of "
                    f"{', '.join(sorted(OTHER_FOLDERS))})"
                )
            continue
        if top == "fixtures":
            if path.suffix == ".py":
                problems.append(f"{rel}: Python code among the fixtures (helpers go in tests/helpers/)")
            continue
        if top == "helpers":
            if path.name.startswith("test_"):
                problems.append(f"{rel}: a test among the helpers")
            elif path.suffix != ".py":
                problems.append(f"{rel}: a data file among the helpers (fixtures go in tests/fixtures/)")
            continue
        if path.suffix != ".py":
            problems.append(f"{rel}: a data file outside tests/fixtures/")
        elif len(rel.parts) == 1 and path.name == CONFTEST:
            continue
        elif not path.name.startswith("test_"):
            problems.append(f"{rel}: a helper module outside tests/helpers/")
        elif len(rel.parts) == 1 and path.name not in OTHER_TOP_LEVEL_TESTS:
            module = path.stem.removeprefix("test_")
            if not (package_root / f"{module}.py").is_file():
                problems.append(f"{rel}: no module src/{package_root.name}/{module}.py")
    return problems


def test_the_tests_mirror_the_package() -> None:
    assert layout_problems(REPO_ROOT / "tests", REPO_ROOT / "src" / "wbpose") == []


def test_every_exception_is_still_needed() -> None:
    tests_root = REPO_ROOT / "tests"
    for folder in OTHER_FOLDERS:
        assert (tests_root / folder).is_dir(), folder
        assert not (REPO_ROOT / "src" / "wbpose" / folder).exists(), f"{folder} is now a package: mirror it"
    for name in OTHER_TOP_LEVEL_TESTS:
        assert (tests_root / name).is_file(), name


def test_each_kind_of_break_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "src" / "pkg"
    for folder in ("engine", "data"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "geometry.py").write_text("")
    tests = tmp_path / "tests"
    good = [
        "conftest.py",
        "test_geometry.py",
        "test_layout_of_tests.py",
        "engine/test_module.py",
        "data/test_cache.py",
        "helpers/__init__.py",
        "helpers/fakes.py",
        "fixtures/meta.json",
        "fixtures/keys/w32.txt",
        "integration/test_train.py",
        "engine/__pycache__/x.pyc",
    ]
    bad = {
        "datasets/test_cache.py": "datasets/: no package src/pkg/datasets",
        "test_losses.py": "test_losses.py: no module src/pkg/losses.py",
        "engine/fakes.py": "engine/fakes.py: a helper module outside tests/helpers/",
        "data/meta.json": "data/meta.json: a data file outside tests/fixtures/",
        "helpers/test_fakes.py": "helpers/test_fakes.py: a test among the helpers",
        "helpers/keys.txt": "helpers/keys.txt: a data file among the helpers",
        "fixtures/make.py": "fixtures/make.py: Python code among the fixtures",
        "integration/deep/test_x.py": "integration/deep/: a sub-folder of tests/integration/",
    }
    for name in good:
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    assert layout_problems(tests, package) == []
    for name in bad:
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text("")
    problems = layout_problems(tests, package)
    for expected in bad.values():
        assert sum(p.startswith(expected) for p in problems) == 1, (expected, problems)
    # the one bad folder is reported once, not again for its file
    assert len(problems) == len(bad)
