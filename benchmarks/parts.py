"""The command line every benchmark of parts shares: pick parts, run them, write their tables."""

import argparse
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
