"""Write a run's output files so that a failure cannot leave them half-done.

The files are written to a hidden folder beside the destination and moved in, one
``os.replace`` each, only once every one is complete. An error, Ctrl-C or SIGTERM
before that removes the hidden folder and leaves the destination as it was: the
old results, whole, or nothing.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(out: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden folder to write into; move its files into ``out`` when all are written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from bnncat.staging import staged_folder
    >>> out = Path(tempfile.mkdtemp()) / "results"
    >>> with staged_folder(out) as stage:
    ...     _ = (stage / "a.txt").write_text("done")
    >>> sorted(p.name for p in out.iterdir())
    ['a.txt']
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield stage
        out.mkdir(exist_ok=True)
        for path in sorted(stage.iterdir()):
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def moved(paths: dict[str, Path], out: Path) -> dict[str, Path]:
    """Return where the files written to a stage are once moved into ``out``."""
    return {what: Path(out) / Path(path).name for what, path in paths.items()}
