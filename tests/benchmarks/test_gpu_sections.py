"""``benchmarks/gpu.py``'s time guard: each section in its own process group, stopped whole at its cap with the rows
it finished kept, skipped once the budget cannot hold its minimum, a failure named; pytest's junit counts read back."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from helpers.paths import load_script


@pytest.fixture(scope="module")
def gpu():
    return load_script("gpu", "benchmarks")


def section_script(tmp_path: Path, body: str) -> list[str]:
    """A section's command: python running ``body`` with ``Rows`` appending to the run's rows file."""
    script = tmp_path / "section.py"
    script.write_text(
        "import json, os, subprocess, sys, time\n"
        f"ROWS = {str(tmp_path / 'rows.jsonl')!r}\n"
        "def add(label, value):\n"
        "    with open(ROWS, 'a') as f:\n"
        "        f.write(json.dumps([label, value]) + '\\n')\n" + body
    )
    return [sys.executable, str(script)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed child not yet reaped by its parent is a zombie: gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_section_past_its_cap_is_stopped_with_what_it_started(gpu, tmp_path) -> None:
    rows = gpu.Rows()
    runner = gpu.SectionRunner(rows, gpu.Budget(60.0), tmp_path / "rows.jsonl", reserve=0.0)
    cmd = section_script(tmp_path, (
        "add('first row', '42 img/s')\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(tmp_path / 'child.pid')!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
        "add('never', 'reached')\n"
    ))  # fmt: skip
    start = time.perf_counter()
    code = runner.run(gpu.Section("slow", cap=3.0, least=0.0), cmd, after=lambda c: rows.add("after", str(c)))
    assert code is None and time.perf_counter() - start < 20
    labels = [label for label, _ in rows.rows]
    assert labels == ["first row", "section slow"]  # the row it finished, then why it ended; `after` not called
    assert rows.rows[1][1].startswith("stopped after ") and "cap 3 s" in rows.rows[1][1]
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.perf_counter() + 5
    while alive(child) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert not alive(child)  # the whole process group went, not only the section's own process
    assert runner.ended[0][:2] == ("slow", "stopped") and not runner.failed


def test_sections_past_the_budget_are_skipped_and_failures_named(gpu, tmp_path) -> None:
    rows = gpu.Rows()
    budget = gpu.Budget(30.0)
    runner = gpu.SectionRunner(rows, budget, tmp_path / "rows.jsonl", reserve=0.0)
    codes = []
    failing = section_script(tmp_path, "add('partial', 'x')\nsys.exit(3)\n")
    assert runner.run(gpu.Section("broken", cap=30.0, least=1.0), failing, after=codes.append) == 3
    assert codes == [3] and runner.failed
    assert rows.rows[-1][0] == "section broken" and rows.rows[-1][1].startswith("FAILED (exit 3 after ")
    marker = tmp_path / "ran"
    late = section_script(tmp_path, f"open({str(marker)!r}, 'w').write('x')\n")
    assert runner.run(gpu.Section("late", cap=10.0, least=1e6), late) is None
    assert not marker.exists()  # never started
    assert rows.rows[-1][0] == "section late" and rows.rows[-1][1].startswith("skipped (time budget: ")
    assert [label for label, _ in rows.rows] == ["partial", "section broken", "section late"]
    assert runner.summary().startswith("broken ") and runner.summary().endswith("late 0 (skipped)")


def test_junit_summary_counts_and_names_failures(gpu, tmp_path) -> None:
    report = tmp_path / "junit.xml"
    report.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1" '
        'skipped="2" tests="7" time="12.34">'
        '<testcase classname="tests.engine.test_fast_step" name="test_a[None]" time="1"/>'
        '<testcase classname="tests.engine.test_fast_step" name="test_b" time="1"><failure message="x"/></testcase>'
        '<testcase classname="tests.engine.test_module" name="test_c" time="1"><error message="y"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu.junit_summary(report) == (
        "3 passed, 1 failed, 1 errors, 2 skipped in 12.3 s; failed: test_fast_step::test_b, test_module::test_c"
    )


def test_train_rows_take_the_fastest_mode_in_memory_first(gpu, tmp_path) -> None:
    ctx = gpu.Context(gpu.torch.device("cpu"), "tiny", gpu.SMOKE_INPUT, tmp_path, [512, 64], 2, 1, 8, 16, tmp_path,
                      True, ["eager", "cuda_graph"], None)  # fmt: skip
    assert gpu.modes_by_speed(ctx, 512) == (["cuda_graph", "eager"], False)  # nothing timed: the fast mode first
    (tmp_path / "step_rates.json").write_text('{"512": {"eager": 1700.0, "cuda_graph": 1500.0}, "64": {"eager": 1}}')
    assert gpu.modes_by_speed(ctx, 512) == (["eager", "cuda_graph"], True)
    assert gpu.modes_by_speed(ctx, 64) == (["eager", "cuda_graph"], True)  # a mode not timed comes after
