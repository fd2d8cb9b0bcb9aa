"""Start the Qt application with one live window (the handler behind ``dislotrack live``)."""

from __future__ import annotations

import signal
import sys

import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from dislotrack.gui.settings import LiveSettings
from dislotrack.gui.window import LiveWindow

SIGNAL_POLL_MS = 200  # Python runs signal handlers only when it gets control from Qt's event loop


def close_on_signals(window: LiveWindow) -> QTimer:
    """Ctrl-C or a shutdown (SIGTERM) closes the window like its close button, so recordings are
    completed; the returned timer (keep a reference) lets Python see the signal while Qt runs."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(SIGNAL_POLL_MS)
    return timer


def run_live(settings: LiveSettings, argv: list[str] | None = None) -> int:
    """Show the window until it is closed; the worker thread is stopped before returning."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    pg.setConfigOptions(antialias=True)
    window = LiveWindow(settings)
    window.resize(1500, 850)
    close_on_signals(window)
    window.show()
    code = app.exec()
    window.stop()
    return int(code)
