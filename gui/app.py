"""Start the Qt application with one live window (the handler behind ``dislotrack live``)."""

from __future__ import annotations

import sys

import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

from dislotrack.gui.settings import LiveSettings
from dislotrack.gui.window import LiveWindow


def run_live(settings: LiveSettings, argv: list[str] | None = None) -> int:
    """Show the window until it is closed; the worker thread is stopped before returning."""
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    pg.setConfigOptions(antialias=True)
    window = LiveWindow(settings)
    window.resize(1500, 850)
    window.show()
    code = app.exec()
    window.stop()
    return int(code)
