"""Train-size annotation loading: bare ``json.load``, the streaming parse, the cache build, cached loads per rank,
two ranks started together, and loader-worker memory over an epoch, in one run.

Data: the full-size train stand-in (``wbpose-synthetic --full-size --out ROOT``: 118,287 images,
262,465 people). Each measurement runs in a fresh process (time and peak RSS of that process, so imports and
earlier steps do not count); the page cache is warm for all of them (the file is read once first).

- ``json.load``: the stdlib floor the issue compares with (6 GB and a minute for the real 748 MB file);
- parse: ``load_instances(ann)`` without a cache (``wbpose.data.coco_files`` streaming parser + the filter);
- cache build: ``cache.prepare`` on an empty folder (hash, parse, write; what ``prepare_data`` does once per node);
- cached load: ``load_instances(ann, cache_dir=...)`` in a fresh process (what each rank's ``setup`` does): time,
  RSS and PSS after the load;
- two ranks: two processes started together on an empty cache folder: how many parsed, and their wall time;
- worker PSS: a ``DataLoader`` with 2 workers over every training instance for one epoch, each sample reading the
  instance's rows of the table as ``CocoWholeBodyDataset`` does (no image decoding, which would take minutes on
  2 cores and is not what is measured); PSS of each worker after 5% and at 100% of the epoch.

Each step runs once, in its fresh process (a cold start is what is measured, so there is no warm-up and no repeat;
the one exception to ``benchmarks/timing.py``'s median).

Usage: ``python benchmarks/annotations.py --root /tmp/wbpose_full [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/timing.py
from timing import add_json_argument, write_json  # noqa: E402

PY = sys.executable
ANN = "annotations/coco_wholebody_train_v1.0.json"


def run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it sets ``out`` (a dict); returns it with ``peak_mb`` added."""
    script = textwrap.dedent(code) + textwrap.dedent("""
        import json
        with open("/proc/self/status") as f:  # VmHWM: this program's peak (ru_maxrss would carry the parent's)
            out["peak_mb"] = next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
        print("RESULT" + json.dumps(out))
    """)
    proc = subprocess.run([PY, "-c", script], capture_output=True, text=True, check=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line[6:])


def pss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/wbpose_full"))
    parser.add_argument("--skip-epoch", action="store_true")
    add_json_argument(parser)
    args = parser.parse_args()
    ann = args.root / ANN
    size = ann.stat().st_size / 2**20
    subprocess.run(["cat", str(ann)], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
    rows = []
    base = run("import time, json\nout = {}")
    rows.append(("python start-up (baseline)", None, base["peak_mb"], ""))
    r = run(f"""
        import json, time
        t = time.perf_counter()
        with open({str(ann)!r}, "rb") as f:
            data = json.load(f)
        out = {{"s": time.perf_counter() - t}}
    """)
    rows.append(("bare json.load", r["s"], r["peak_mb"], ""))
    ref_s, ref_mb = r["s"], r["peak_mb"]
    r = run(f"""
        import time
        from wbpose.data.annotations import load_instances
        t = time.perf_counter()
        table = load_instances({str(ann)!r})
        out = {{"s": time.perf_counter() - t, "n": len(table.instance_ids)}}
    """)
    rows.append(("parse: load_instances (streaming parser + filter)", r["s"], r["peak_mb"],
                 f"{r['s'] / ref_s:.2f}x time, {r['peak_mb'] / ref_mb:.2f}x memory of json.load"))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cache"
        r = run(f"""
            import time
            from wbpose.data import cache
            from wbpose.data.annotations import load_instances
            t = time.perf_counter()
            cache.prepare({str(folder)!r}, [{str(ann)!r}])
            load_instances({str(ann)!r}, cache_dir={str(folder)!r})
            out = {{"s": time.perf_counter() - t}}
        """)
        rows.append(("cache build (prepare_data: hash + parse + write + filtered table)", r["s"], r["peak_mb"], ""))
        r = run(f"""
            import time
            t0 = time.perf_counter()
            from wbpose.data.annotations import load_instances
            from wbpose.data import cache
            t = time.perf_counter()
            table = load_instances({str(ann)!r}, cache_dir={str(folder)!r})
            s = time.perf_counter() - t
            cache.prefault(*[v for v in vars(table).values() if hasattr(v, "shape")])
            with open("/proc/self/smaps_rollup") as f:
                pss = next(int(x.split()[1]) for x in f if x.startswith("Pss:")) / 1024
            out = {{"s": s, "pss": pss, "n": len(table.instance_ids)}}
        """)
        rows.append(("cached load per rank (setup), warm page cache", r["s"], r["peak_mb"],
                     f"PSS {r['pss']:.0f} MB after touching every page; {r['n']} instances"))  # fmt: skip
        r = run(f"""
            import time
            from wbpose.data import cache
            t = time.perf_counter()
            cache.prepare({str(folder)!r}, [{str(ann)!r}])
            out = {{"s": time.perf_counter() - t}}
        """)
        rows.append(("prepare_data on a valid cache (full verification)", r["s"], r["peak_mb"], ""))

        # two ranks together on an empty cache
        folder2 = Path(tmp) / "cache2"
        code = textwrap.dedent(f"""
            import time, logging, sys
            logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
            from wbpose.data.annotations import load_instances
            t = time.perf_counter()
            load_instances({str(ann)!r}, cache_dir={str(folder2)!r})
            print("WALL", time.perf_counter() - t)
        """)
        start = time.perf_counter()
        procs = [subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate()[0] for p in procs]
        wall = time.perf_counter() - start
        parses = sum(line.startswith("cached ") for o in outs for line in o.splitlines())  # one line per build
        rows.append(("2 ranks started together, empty cache", wall, None, f"{parses} parse(s) in total"))

        if not args.skip_epoch:
            r = run(f"""
                import os, time, numpy as np, torch
                from torch.utils.data import DataLoader, Dataset
                from wbpose.data.annotations import load_instances
                from wbpose.engine.datamodule import WorkerInit

                class Rows(Dataset):  # what CocoWholeBodyDataset reads from the table per sample
                    def __init__(self, t):
                        self.instances = t
                    def __len__(self):
                        return len(self.instances.instance_ids)
                    def __getitem__(self, i):
                        t = self.instances
                        name = str(t.file_names[t.image_index[i]])
                        kp = np.array(t.keypoints_xy[i]) * 1.0
                        return torch.tensor([kp.sum(), float(t.visible[i].sum()), t.center_xy[i][0], t.scale_wh[i][0],
                                             len(name)])

                def pss(pid):
                    with open(f"/proc/{{pid}}/smaps_rollup") as f:
                        return next(int(x.split()[1]) for x in f if x.startswith("Pss:")) / 1024

                table = load_instances({str(ann)!r}, cache_dir={str(folder)!r})
                loader = DataLoader(Rows(table), batch_size=256, shuffle=True, num_workers=2,
                                    worker_init_fn=WorkerInit(prefault=True), persistent_workers=True)
                it = iter(loader)
                n = len(loader)
                early, t = None, time.perf_counter()
                for b, _ in enumerate(it):
                    if b == n // 20:
                        early = [pss(w.pid) for w in it._workers]
                late = [pss(w.pid) for w in it._workers]
                out = {{"early": early, "late": late, "s": time.perf_counter() - t, "n": len(table.instance_ids)}}
            """)
            growth = max(lt / e - 1 for e, lt in zip(r["early"], r["late"]))
            rows.append(("epoch over every instance, 2 workers", r["s"], None,
                         f"worker PSS at 5%: {', '.join(f'{v:.0f}' for v in r['early'])} MB; at 100%: "
                         f"{', '.join(f'{v:.0f}' for v in r['late'])} MB (growth {growth * 100:+.1f}%)"))  # fmt: skip
    print(f"### Train-size annotation loading: {ann} ({size:.0f} MB); {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    print("| step | wall s | peak RSS MB | notes |")
    print("|---|---:|---:|---|")
    for label, s, mb, note in rows:
        print(f"| {label} | {'' if s is None else f'{s:.2f}'} | {'' if mb is None else f'{mb:.0f}'} | {note} |")
    cells = [
        [label, "" if s is None else f"{s:.2f}", "" if mb is None else f"{mb:.0f}", note] for label, s, mb, note in rows
    ]
    notes = [f"{ann} ({size:.0f} MB); each step once, in a fresh process, page cache warm."]
    write_json(args.json, "annotations", ["step", "wall s", "peak RSS MB", "notes"], cells, notes)


if __name__ == "__main__":
    main()
