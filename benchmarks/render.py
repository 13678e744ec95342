"""Render the benchmark tables of docs/benchmarks.md from the json the benchmarks wrote (``--json``).

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``; the block is replaced by the header
line (date · commit · machine · versions), the command that produced it, the table and its notes, all taken from
``docs/benchmark_results/NAME.json``. So a figure on the page is always what a command printed.

Usage::

    python benchmarks/render.py            # rewrite the page
    python benchmarks/render.py --check    # exit 1 when the page differs from what the json renders
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "docs" / "benchmark_results"
BLOCK = re.compile(r"<!-- bench:(?P<name>[\w.-]+) -->\n.*?<!-- /bench:(?P=name) -->", re.DOTALL)


def header_line(header: dict) -> str:
    """``> date · commit · machine · versions`` from :func:`timing.environment`'s dict."""
    machine = header.get("machine", {})
    where = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores"
    if machine.get("load_1min") is not None:
        where += f" (1-min load {machine['load_1min']:g} at the end)"
    if machine.get("gpu"):
        where += f", {machine['gpu']}"
    versions = ", ".join(f"{k} {v}" for k, v in header.get("versions", {}).items() if v)
    return f"> {header.get('date', '?')} · commit `{header.get('commit', '?')}` · {where} · {versions}"


def render_table(data: dict) -> str:
    """The markdown a json renders to: header line, command, table, notes (no markers)."""
    for key in ("benchmark", "header", "command", "columns", "rows"):
        if key not in data:
            raise ValueError(f"benchmark json {data.get('benchmark', '?')!r}: missing key {key!r}")
    columns = data["columns"]
    lines = [header_line(data["header"]), "", f"`{data['command']}`", ""]
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "---|" * len(columns))
    for i, row in enumerate(data["rows"]):
        if len(row) != len(columns):
            raise ValueError(f"benchmark json {data['benchmark']!r}: row {i} has {len(row)} cells, not {len(columns)}")
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    if data.get("notes"):
        lines.append("")
        lines += data["notes"] if len(data["notes"]) == 1 else [f"- {n}" for n in data["notes"]]
    return "\n".join(lines)


def render_page(text: str, results: Path) -> str:
    """``text`` with every marked block replaced by what ``results/NAME.json`` renders to."""

    def block(match: re.Match) -> str:
        name = match["name"]
        path = results / f"{name}.json"
        if not path.is_file():
            raise FileNotFoundError(f"{PAGE.name}: block bench:{name} has no results file {path}")
        data = json.loads(path.read_text())
        return f"<!-- bench:{name} -->\n{render_table(data)}\n<!-- /bench:{name} -->"

    return BLOCK.sub(block, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the page differs from the json")
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    text = args.page.read_text()
    rendered = render_page(text, args.results)
    if args.check:
        if rendered != text:
            print(f"{args.page}: tables differ from {args.results}/*.json; run python benchmarks/render.py")
            return 1
        return 0
    if rendered != text:
        args.page.write_text(rendered)
        print(f"rendered {args.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
