"""``benchmarks/render.py`` and ``benchmarks/timing.py``: json in, docs tables out; one statistic for all timings."""

from __future__ import annotations

import importlib
import json
import sys

import pytest

from helpers.paths import REPO_ROOT, load_script

render = load_script("render", "benchmarks")
# The benchmarks import timing.py by name (their folder first on sys.path); a registered module, as dataclasses need.
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
timing = importlib.import_module("timing")

TINY = {
    "benchmark": "tiny",
    "header": {
        "date": "2026-12-07 05:00 UTC",
        "commit": "abc1234",
        "machine": {"cpu": "Some CPU", "cores": 2, "load_1min": 1.5},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "lightning": None},
    },
    "command": "python benchmarks/tiny.py --quick",
    "columns": ["case", "ms", "x floor"],
    "rows": [["a|b", "1.000 (0.900-1.200)", "1.20x"], ["c", "2.000 (2.000-2.000)", "2.40x"]],
    "notes": ["ms: median of 3 after 1 warm-up run (min-max)."],
}
PAGE = "# Page\n\nbefore\n\n<!-- bench:tiny -->\nold figures\n<!-- /bench:tiny -->\n\nafter\n"


def test_render_replaces_the_block_with_header_command_and_table(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert render.main(["--check", "--page", str(page), "--results", str(tmp_path)]) == 1  # old figures differ
    assert render.main(["--page", str(page), "--results", str(tmp_path)]) == 0
    text = page.read_text()
    assert "old figures" not in text and text.startswith("# Page\n\nbefore\n") and text.endswith("\nafter\n")
    assert "> 2026-12-07 05:00 UTC · commit `abc1234` · Some CPU, 2 cores" in text
    assert "(1-min load 1.5 at the end) · python 3.11.7, torch 2.13.0\n" in text
    assert "lightning" not in text  # versions not known are left out
    assert "`python benchmarks/tiny.py --quick`" in text
    assert "| case | ms | x floor |\n|---|---|---|\n| a\\|b | 1.000 (0.900-1.200) | 1.20x |" in text
    assert "ms: median of 3 after 1 warm-up run (min-max)." in text
    assert render.main(["--check", "--page", str(page), "--results", str(tmp_path)]) == 0  # now in sync


def test_render_names_a_missing_results_file_and_a_ragged_row(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    with pytest.raises(FileNotFoundError, match="bench:tiny"):
        render.main(["--page", str(page), "--results", str(tmp_path)])
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "rows": [["only one cell"]]}))
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        render.main(["--page", str(page), "--results", str(tmp_path)])


def test_the_docs_page_is_what_the_json_renders():
    assert render.main(["--check"]) == 0, "docs/benchmarks.md is stale: run python benchmarks/render.py"


def test_measure_is_the_median_after_warmup_with_the_range():
    calls = []
    t = timing.measure(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7 and t.n == 5 and t.warmup == 2
    assert 0 <= t.min <= t.median <= t.max
    assert t.statistic == "median of 5 after 2 warm-up runs (min-max)"
    even = timing.Timing.of([4.0, 1.0, 3.0, 2.0], 1)
    assert (even.median, even.min, even.max, even.n) == (2.5, 1.0, 4.0, 4)
    rate = timing.Timing.of([0.5, 0.25, 1.0]).rate(8)
    assert (rate.median, rate.min, rate.max) == (16.0, 8.0, 32.0)  # the slowest call gives the lowest rate
    with pytest.raises(ValueError):
        timing.measure(lambda: None, warmup=0, repeats=0)


def test_environment_names_commit_machine_and_versions():
    env = timing.environment()
    assert set(env) == {"date", "commit", "machine", "versions"}
    assert env["commit"] and env["machine"]["cores"] >= 1 and env["versions"]["numpy"]
