"""Progress of a fit: a bar on a terminal or in a notebook, a line every few seconds in a log."""

import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

with warnings.catch_warnings():
    # in a notebook without ipywidgets tqdm.auto falls back to a text bar and warns, with
    # its own file path, once at import; numpyro imports it too, so import it here, quietly
    warnings.filterwarnings("ignore", "IProgress not found")
    from tqdm.auto import tqdm

#: Seconds between two progress lines when the output is a log (no terminal).
LOG_INTERVAL = 5.0


def writes_to_log() -> bool:
    """Tell whether standard error is neither a terminal nor a notebook (a file, a CI log)."""
    return not sys.stderr.isatty() and "ipykernel" not in sys.modules


class Progress:
    """Count steps of a loop: a tqdm bar, or in a log a line every ``LOG_INTERVAL`` seconds.

    Examples
    --------
    >>> with Progress(3, "demo", show=False) as progress:
    ...     for _ in range(3):
    ...         progress.update(1, "ok")
    """

    def __init__(self, total: int, desc: str, *, show: bool = True) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self.bar: Any = None
        self.log = show and writes_to_log()
        self.last = time.perf_counter()
        if show and not self.log:
            self.bar = tqdm(total=total, desc=desc)

    def __enter__(self) -> "Progress":
        return self

    def update(self, n: int, status: str = "") -> None:
        """Record ``n`` more steps, and what to show beside the count."""
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(n)
        elif self.log and (
            time.perf_counter() - self.last >= LOG_INTERVAL or self.done >= self.total
        ):
            self.last = time.perf_counter()
            print(f"{self.desc}: {self.done}/{self.total} {status}".rstrip(), file=sys.stderr)

    def __exit__(
        self, kind: type | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def heartbeat(desc: str) -> Iterator[None]:
    """In a log, print ``desc`` and the time elapsed every ``LOG_INTERVAL`` seconds.

    For a sampler whose own progress bars, one per chain, would interleave in a log.
    """
    done = threading.Event()
    start = time.perf_counter()

    def beat() -> None:
        while not done.wait(LOG_INTERVAL):
            print(f"{desc}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
