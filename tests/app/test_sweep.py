"""wbpose-summarize on multirun folders written by hand: groups, rounding, hidden folders, CSV and plot files."""

from __future__ import annotations

import csv
import io
import logging
import math

import cv2
import numpy as np
import pytest

from helpers.sweeps import part_metrics, write_job
from wbpose.app.sweep import (
    collect_jobs,
    collect_multirun,
    display_override,
    main,
    plot_sweep,
    runs_csv,
    swept_keys,
)
from wbpose.metrics.plots import PART_PLOT_COLORS

#: AP per part of each (input, seed) job; Whole AP rises with the input size, body AP falls.
AP = {
    ("128x96", 0): {"body": 0.60, "foot": 0.44, "face": 0.13, "hand": 0.15, "wholebody": 0.17},
    ("128x96", 1): {"body": 0.62, "foot": 0.46, "face": 0.15, "hand": 0.16, "wholebody": 0.19},
    ("256x192", 0): {"body": 0.40, "foot": 0.28, "face": 0.55, "hand": 0.34, "wholebody": 0.40},
    ("256x192", 1): {"body": 0.48, "foot": 0.30, "face": 0.57, "hand": 0.36, "wholebody": 0.44},
}


@pytest.fixture
def grid(tmp_path):
    """A 2 sizes x 2 seeds multirun as submitit leaves it: job folders 0-3 and a .submitit folder beside them."""
    folder = tmp_path / "multirun"
    for num, ((size, seed), ap) in enumerate(AP.items()):
        write_job(folder / str(num), [f"input={size}", f"seed={seed}", "experiment=demo"], part_metrics(ap))
    logs = folder / ".submitit" / "4242_0"
    logs.mkdir(parents=True)
    (logs / "4242_0_log.out").write_text("submitit log\n")
    (logs / "4242_0_submitted.pkl").write_bytes(b"\x80\x04N.")
    return folder


def test_display_override_rounds_long_decimals_only() -> None:
    assert display_override("optim.lr=0.0006554064060987877") == "optim.lr=0.0006554"
    assert display_override("+optim.lr=0.0006554064060987877", digits=2) == "+optim.lr=0.00066"
    for kept in ("seed=3", "input=128x96", "optim.lr=1e-4", "input.sigma=2.5", "tags=[a,b]", "x=nan"):
        assert display_override(kept) == kept


def test_rounded_names_never_merge_two_configurations(tmp_path) -> None:
    lrs = ("0.00065540011", "0.00065540019", "0.0020820425119991953")
    for num, lr in enumerate(lrs):
        write_job(tmp_path / str(num), [f"optim.lr={lr}"], part_metrics({"wholebody": 0.1 * num}))
    groups, _ = collect_multirun(tmp_path)
    names = list(groups)
    assert len(set(names)) == 3  # 4 significant digits would merge the first two: more digits for all
    assert names[:2] == ["optim.lr=0.00065540011", "optim.lr=0.00065540019"]
    assert names[2] == "optim.lr=0.0020820425"
    write_job(tmp_path / "1", ["optim.lr=0.0006"], part_metrics({"wholebody": 0.1}))  # now 4 digits tell them apart
    assert list(collect_multirun(tmp_path)[0]) == ["optim.lr=0.0006554", "optim.lr=0.0006", "optim.lr=0.002082"]


def test_hidden_folders_are_not_jobs_and_failed_jobs_are_named(grid, caplog) -> None:
    stray = grid / ".trash" / "7"  # a job folder under a hidden folder is not part of the sweep
    write_job(stray, ["input=999x999", "seed=0", "experiment=demo"], part_metrics({"wholebody": 0.9}))
    write_job(grid / "4", ["input=384x288", "seed=0", "experiment=demo"], None)  # failed: no metrics.json
    with caplog.at_level(logging.WARNING, logger="wbpose.app.sweep"):
        runs = collect_jobs(grid)
    assert [r.job for r in runs] == ["0", "1", "2", "3"]
    assert "1 of 5 job(s)" in caplog.text and ": 4;" in caplog.text and str(grid / ".submitit") in caplog.text
    assert swept_keys(runs) == ["input", "seed"]


def test_csv_has_one_row_per_job_with_swept_values_and_metrics(grid) -> None:
    runs = collect_jobs(grid)
    rows = list(csv.DictReader(io.StringIO(runs_csv(runs, ["input", "seed"]))))
    assert [(r["job"], r["input"], r["seed"]) for r in rows] == [
        ("0", "128x96", "0"), ("1", "128x96", "1"), ("2", "256x192", "0"), ("3", "256x192", "1")
    ]  # fmt: skip
    for row, ap in zip(rows, AP.values()):
        assert float(row["wholebody_ap"]) == pytest.approx(ap["wholebody"])
        assert float(row["body_ar"]) == pytest.approx(ap["body"] + 0.05)
        assert row["overrides"].split() == [f"input={row['input']}", f"seed={row['seed']}", "experiment=demo"]


def _part_points(image: np.ndarray, part: str) -> list[tuple[float, float]]:
    """Centroids of the areas painted exactly in ``part``'s colour above the legend (points + joining line)."""
    plot = image[: image.shape[0] - 70]
    mask = np.all(plot == np.asarray(PART_PLOT_COLORS[part], np.uint8), axis=-1).astype(np.uint8)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask)
    return [tuple(centroids[i]) for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= 20]


def test_plot_draws_every_part_rising_or_falling_as_the_data(grid) -> None:
    image = plot_sweep(collect_jobs(grid))
    assert image.dtype == np.uint8 and image.shape[2] == 3
    for part in PART_PLOT_COLORS:
        assert _part_points(image, part), f"no {part} line drawn"
    # a line's pixels lean the way its values go: Whole AP rises with the size (right end higher), body AP falls
    for part, rises in (("wholebody", True), ("body", False)):
        mask = np.all(image[: image.shape[0] - 70] == np.asarray(PART_PLOT_COLORS[part], np.uint8), axis=-1)
        ys, xs = mask.nonzero()
        slope = np.polyfit(xs, ys, 1)[0]  # image y grows downwards
        assert (slope < 0) == rises, part


def test_plot_refuses_an_x_key_that_was_not_swept(grid) -> None:
    with pytest.raises(ValueError, match="--x codec: not a swept key of this multirun \\(swept: input\\)"):
        plot_sweep(collect_jobs(grid), x_key="codec")


def test_main_prints_the_table_and_writes_table_csv_and_png(grid, capsys) -> None:
    assert main([str(grid)]) == 0
    printed = capsys.readouterr()
    table = (grid / "summary.md").read_text()
    assert printed.out.strip() == table.strip()
    lines = table.strip().splitlines()
    assert lines[0].startswith("| Config | Runs | Body AP |")
    assert lines[2].startswith("| input=128x96 experiment=demo | 2 | 0.610 ± 0.014 |")
    assert lines[3].startswith("| input=256x192 experiment=demo | 2 | 0.440 ± 0.057 |")
    whole = [row.split(" | ")[10] for row in lines[2:4]]
    assert whole == ["0.180 ± 0.014", "0.420 ± 0.028"]
    best = "Best trial (metrics.json): val/wholebody_ap = 0.4400 with `input=256x192` `seed=1` `experiment=demo`"
    assert lines[-1] == best
    assert len(list(csv.DictReader((grid / "summary.csv").open()))) == 4
    png = cv2.imread(str(grid / "summary.png"))
    assert png is not None and png.shape[0] > 300 and png.shape[1] > 500
    assert "summary.png" in printed.err


def test_main_writes_elsewhere_and_says_when_nothing_finished(grid, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    assert main([str(grid), "--out-dir", str(out), "--plot", str(tmp_path / "ablation.png")]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.md"]
    assert (tmp_path / "ablation.png").is_file() and not (grid / "summary.md").exists()
    empty = tmp_path / "empty"
    write_job(empty / "0", ["seed=0"], None)
    assert main([str(empty)]) == 1
    assert "no job under" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])


def test_optuna_sweep_plots_unconnected_points_on_a_log_axis(tmp_path) -> None:
    """Many swept keys (an Optuna study): one panel, every trial its own point."""
    rng = np.random.default_rng(0)
    lrs = []
    for num in range(8):
        lr = float(10 ** rng.uniform(-4, -2))
        lrs.append(lr)
        sigma = rng.choice([1.5, 2.0, 2.5, 3.0])
        rotate = 30.0 + 5 * num  # every trial its own combination of the other keys: more than MAX_PANELS
        ap = {"wholebody": float(rng.uniform(0.1, 0.5)), "body": float(rng.uniform(0.3, 0.7))}
        write_job(tmp_path / str(num), [f"optim.lr={lr!r}", f"input.sigma={sigma}",
                                        f"data.geometric.rotate_factor={rotate}"], part_metrics(ap))  # fmt: skip
    (tmp_path / "optimization_results.yaml").write_text(
        "name: optuna\nbest_params:\n  optim.lr: 0.0006554064060987877\nbest_value: 0.4321987\n"
    )
    runs = collect_jobs(tmp_path)
    image = plot_sweep(runs)
    points = _part_points(image, "wholebody")
    assert len(points) == 8  # not joined: 8 separate points, in one panel
    assert image.shape[1] < 700
    xs = sorted(x for x, _ in points)
    assert np.corrcoef(xs, np.log10(sorted(lrs)))[0, 1] > 0.999  # a log axis: the rates span a factor of 20+
    assert not any(math.isnan(x) for x, _ in _part_points(image, "body"))
    table = (main([str(tmp_path)]), (tmp_path / "summary.md").read_text())[1]
    assert table.strip().splitlines()[-1] == "Best trial (optuna): val/wholebody_ap = 0.4322 with `optim.lr=0.0006554`"
