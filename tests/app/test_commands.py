"""Every command in one place: a ``main`` per ``wbpose.app`` module, a console command for each, a shim per script.

The layout checked here: ``pyproject.toml``'s ``[project.scripts]`` maps ``wbpose-<name>`` to
``wbpose.app.<module>:main``; ``scripts/<name>.py`` (``-`` as ``_``) only imports that same ``main`` and runs it;
no module outside ``wbpose.app`` has a command-line entry point; mains return an exit status (the console wrapper
calls ``sys.exit(main())``, which exits 1 and echoes any other value).
"""

from __future__ import annotations

import ast
import importlib

import pytest

from helpers.paths import REPO_ROOT

SRC = REPO_ROOT / "src" / "wbpose"
#: Development tools in scripts/ that are not commands of the package.
DEV_SCRIPTS = {"check_layers"}
#: Domain modules whose command line moved to wbpose.app but whose file another change is moving.
PENDING: set[str] = set()


def console_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml (name -> "module:function"; no tomllib on Python 3.10)."""
    section = (REPO_ROOT / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    pairs = [line.split("=", 1) for line in section.splitlines() if "=" in line and not line.startswith("#")]
    return {name.strip(): target.strip().strip('"') for name, target in pairs}


def _defines_main(path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def _has_main_guard(path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def test_every_console_command_is_the_main_of_an_app_module() -> None:
    commands = console_scripts()
    assert commands, "no [project.scripts]"
    for name, target in commands.items():
        module, _, function = target.partition(":")
        assert module.startswith("wbpose.app.") and function == "main", f"{name} = {target}"
        assert callable(importlib.import_module(module).main), target
    # and every app module with a main is a console command
    with_main = {f"wbpose.app.{p.stem}" for p in (SRC / "app").glob("*.py") if _defines_main(p)}
    assert with_main == {t.partition(":")[0] for t in commands.values()}


def test_every_script_is_a_shim_named_like_its_command() -> None:
    commands = console_scripts()
    scripts = sorted(p for p in (REPO_ROOT / "scripts").glob("*.py") if p.stem not in DEV_SCRIPTS)
    assert {f"wbpose-{p.stem.replace('_', '-')}" for p in scripts} == set(commands)
    for script in scripts:
        tree = ast.parse(script.read_text(encoding="utf-8"))
        imports = [node for node in tree.body if isinstance(node, ast.ImportFrom)]
        module = commands[f"wbpose-{script.stem.replace('_', '-')}"].partition(":")[0]
        assert [(i.module, [a.name for a in i.names]) for i in imports] == [(module, ["main"])], script.name
        functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
        assert not functions, f"{script.name} has logic of its own: {[f.name for f in functions]}"
        assert _has_main_guard(script), script.name


def test_no_entry_point_outside_the_app_layer() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("app/") or rel in PENDING:
            continue
        if _defines_main(path) or _has_main_guard(path):
            found.append(rel)
    assert not found, f"command-line entry points outside wbpose.app: {found}"


def test_table_commands_exit_zero(capsys) -> None:
    """``wbpose-model-info`` prints its table and returns 0 (it used to return the table: exit status 1)."""
    from wbpose.app.model_info import main

    assert main(["--archs", "tiny", "--sizes", "128x96"]) == 0
    assert "| tiny | 128x96 |" in capsys.readouterr().out


def test_synthetic_refuses_options_of_the_other_form(tmp_path, capsys) -> None:
    from wbpose.app.synthetic import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--full-size", "--out", str(tmp_path), "--num-train", "5"])
    assert exit_info.value.code == 2 and "--full-size does not take --num-train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path), "--scale", "0.1"])
    assert "the learnable set (no --full-size) does not take --scale" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_synthetic_refuses_a_foreign_folder(tmp_path, capsys) -> None:
    (tmp_path / "mine.txt").write_text("not a dataset")
    from wbpose.app.synthetic import main

    assert main(["--out", str(tmp_path), "--num-train", "1", "--num-val", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: refusing to generate synthetic data into") and str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_synthetic_full_size_form(tmp_path, capsys) -> None:
    import json

    from wbpose.app.synthetic import main

    out = tmp_path / "full"
    assert main(["--full-size", "--out", str(out), "--scale", "0.001", "--splits", "val", "--no-images"]) == 0
    printed = json.loads(capsys.readouterr().out)
    ann = json.loads((out / "annotations" / "coco_wholebody_val_v1.0.json").read_text())
    assert printed["val"]["images"] == len(ann["images"]) > 0 and not (out / "val2017").exists()


def test_synthetic_video_command(tmp_path, capsys) -> None:
    import json

    from wbpose.app.synthetic_video import main

    assert main(["--out", str(tmp_path), "--frames", "2", "--hw", "120", "160", "--people", "1", "--stem", "v"]) == 0
    assert "v.mp4 (2 frames, 1 people)" in capsys.readouterr().out
    gt = json.loads((tmp_path / "v_gt.json").read_text())
    assert [im["id"] for im in gt["images"]] == [0, 1] and (tmp_path / "v.mp4").stat().st_size > 0
