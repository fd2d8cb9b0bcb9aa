"""PySide6 + pyqtgraph live window: a thin view over dislotrack.runtime."""
