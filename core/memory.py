"""Peak resident memory of a stretch of work in this process (used by bench/train and bench/decode).

`getrusage`'s ru_maxrss is the peak of the whole process's life, so a second stage measured in
the same process would report the first one's peak. `PeakRSS` samples the current resident set
(VmRSS in /proc/self/status) from a daemon thread while its block runs and keeps the maximum,
so each stage gets its own peak. Where /proc is missing (macOS) it falls back to ru_maxrss.
"""

from __future__ import annotations

import resource
import sys
import threading
from pathlib import Path
from types import TracebackType

_STATUS = Path("/proc/self/status")


def current_rss_mib() -> float | None:
    """This process's resident set now, in MiB (None where /proc is not available)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        return None
    return None


def lifetime_peak_rss_mib() -> float:
    """The process's peak resident set since it started, in MiB (ru_maxrss)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes vs kB


class PeakRSS:
    """`with PeakRSS() as m: ...` then `m.peak_mib`: the highest resident set seen during the block.

    Sampled every `interval` seconds, plus once at entry and once at exit, so a spike shorter
    than the interval can be missed; 50 ms is far below a training step or a generation.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self.start_mib = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc = current_rss_mib() is not None

    def _sample(self) -> None:
        now = current_rss_mib()
        if now is not None and now > self.peak_mib:
            self.peak_mib = now

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> PeakRSS:
        if self._proc:
            self.start_mib = current_rss_mib() or 0.0
            self.peak_mib = self.start_mib
            self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
            self._thread.start()
        else:
            self.start_mib = self.peak_mib = lifetime_peak_rss_mib()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()
        else:
            self.peak_mib = lifetime_peak_rss_mib()
