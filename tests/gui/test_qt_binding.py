"""Guard against a Qt binding that corrupts reference counts (PySide6 6.12.0 did, killing the window)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_repeated_widget_and_plot_calls_keep_none_and_true_alive(qtbot):
    import pyqtgraph as pg
    from PySide6.QtWidgets import QLabel

    label = QLabel("x")
    plot = pg.PlotWidget()
    qtbot.addWidget(label)
    qtbot.addWidget(plot)
    curve = plot.plot()
    x = np.arange(50.0)
    before_none, before_true = sys.getrefcount(None), sys.getrefcount(True)
    for i in range(500):
        label.setText(str(i))
        curve.setData(x, x + i)
        curve.setVisible(True)
    # a leak of one reference per call would show as a drop of >= 500; caches may add a few
    assert sys.getrefcount(None) - before_none > -200
    assert sys.getrefcount(True) - before_true > -200
