"""What the benchmarks of parts share: a measurement in a fresh process, and the command line."""

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "out"


def run_parts(
    description: str, name: str, parts: dict[str, Callable[[bool], pd.DataFrame]]
) -> None:
    """Parse ``--part`` and ``--quick``; write each part's table to ``out/<name>_<part>.*``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--part", choices=list(parts), action="append")
    parser.add_argument("--quick", action="store_true", help="fewer draws, seeds and splits")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    for part in args.part or list(parts):
        table = parts[part](args.quick)
        table.to_csv(OUT / f"{name}_{part}.csv", index=False)
        markdown = table.to_markdown(index=False, floatfmt=".3f")
        (OUT / f"{name}_{part}.md").write_text(markdown + "\n")
        print(f"\n## {part}\n\n{markdown}\n", flush=True)


def in_fresh_process(module: str, function: str, *args: object) -> dict:
    """Return ``benchmarks/<module>.<function>(*args)`` (a JSON-able dict) run in a new Python.

    A fresh process pays what a user's new session pays: imports aside, graph
    building and compilation. Raises RuntimeError with the child's error output.
    """
    call = f"{function}({', '.join(repr(a) for a in args)})"
    code = (
        "import sys, json; sys.path.insert(0, 'benchmarks');"
        f"from {module} import {function};"
        f"print('RESULT', json.dumps({call}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(line[0].split(maxsplit=1)[1])
