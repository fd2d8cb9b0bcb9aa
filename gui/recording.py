"""Recording live results to a folder with the runtime's own writers, on a thread of its own.

The files are exactly those of ``dislotrack process`` (``RunWriter``): the GUI never writes result
files itself. Writing runs on its own thread so that neither the GUI thread (no file I/O, no hashing
of the source, no figure drawing there) nor the pipeline (no added latency) waits for the disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dislotrack.runtime.export import ExportConfig, RunWriter
from dislotrack.runtime.results import FrameResult

log = logging.getLogger(__name__)

_CLOSE = object()


class Recorder:
    """Writes each result handed to ``write`` into ``out_dir``; ``close`` completes every file.

    ``info`` is called on the recording thread (it may hash the source file) to give ``run.json``'s
    header. ``on_done(out_dir, error)`` is called on the recording thread when the files are complete.
    """

    def __init__(
        self,
        out_dir: Path,
        info: Callable[[], Mapping[str, Any]],
        on_done: Callable[[Path, str], None],
        config: ExportConfig | None = None,
        max_pending: int = 512,
    ) -> None:
        self.out_dir = Path(out_dir)
        self._info, self._on_done, self._config = info, on_done, config or ExportConfig()
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self.dropped = 0
        self.written = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="dislotrack-recorder", daemon=True)
        self._thread.start()

    def write(self, result: FrameResult) -> None:
        """Queue one result; if the disk cannot keep up the result is counted as not recorded."""
        if self._closing:
            return
        try:
            self._queue.put_nowait(result)
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Ask for the files to be completed; returns at once (``wait`` blocks until they are)."""
        if not self._closing:
            self._closing = True
            self._queue.put(_CLOSE)

    def wait(self, timeout_s: float | None = None) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        error = ""
        writer: RunWriter | None = None
        try:
            writer = RunWriter(self.out_dir, self._info(), self._config)
            while (item := self._queue.get()) is not _CLOSE:
                writer.write(item)
                self.written += 1
        except Exception as exc:  # a full disk or a vanished folder must not take the window down
            self._closing = True
            error = f"Recording to {self.out_dir} failed: {exc}"
            log.error(error)
        finally:
            if writer is not None:
                extra = {"not_recorded_frames": self.dropped}
                writer.close("failed" if error else "complete", error or None, extra)
            self._on_done(self.out_dir, error)
