"""scripts/line_pieces.py: each labelled line's fate against predictions drawn to be whole, split,
swallowed by a longer line, or missing."""

from __future__ import annotations

import numpy as np
import pytest
from drawing import curve, line_mask

SHAPE = (160, 200)


@pytest.fixture(scope="module")
def pieces(load_script):
    return load_script("line_pieces")


def _mask(xy: np.ndarray, half_width: float = 1.5) -> np.ndarray:
    return line_mask(SHAPE, xy, half_width)


def _truth() -> np.ndarray:
    """Two bowed labelled lines, one above the other."""
    return np.stack([_mask(curve(20, 40, 180, 40, bow=10)), _mask(curve(20, 110, 180, 110, bow=10))])


def test_a_line_drawn_once_is_whole(pieces) -> None:
    truth = _truth()
    (a, b) = pieces.line_fates(truth, truth[:1])
    assert (a.fate, a.pieces) == ("whole", 1) and a.best_own > 0.95 and a.best_on > 0.95
    assert a.lar == 1.0 and b.lar == 0.0
    assert (b.fate, b.pieces) == ("missed", 0) and b.covered == 0.0


def test_a_line_in_three_pieces_is_split(pieces) -> None:
    xy = curve(20, 40, 180, 40, bow=10)
    thirds = [_mask(part) for part in np.array_split(xy, 3)]
    (a, _) = pieces.line_fates(_truth(), np.stack(thirds))
    assert (a.fate, a.pieces) == ("split", 3)
    assert a.own > 0.9 and 0.25 < a.best_own < 0.45
    assert a.lar == 0.0  # no third overlaps the whole line at IoU >= 0.5, so LAR matches none


def test_a_line_inside_a_much_longer_one_is_swallowed(pieces) -> None:
    """A straight trace running through the first line's middle and far beyond it on both sides
    covers part of it but lies mostly elsewhere; the line's own short piece is too short to count."""
    truth = np.stack([_mask(curve(80, 40, 120, 40))])
    trace = _mask(curve(0, 40, 199, 40))
    fates = pieces.line_fates(truth, trace[None])
    assert [f.fate for f in fates] == ["swallowed"]
    assert fates[0].covered > 0.9 and fates[0].own == 0.0


def test_summary_shares_add_up(pieces) -> None:
    truth = _truth()
    fates = pieces.line_fates(truth, truth[:1])
    s = pieces.summarise(fates, n_pred=1)
    assert s["lines"] == 2 and s["whole"] == 0.5 and s["missed"] == 0.5
    assert (s["lar"], s["whole_lar"], s["missed_lar"]) == (0.5, 1.0, 0.0)
    assert sum(s[f] for f in pieces.FATES) == pytest.approx(1.0)
    assert sum(s[f + "_length"] for f in pieces.FATES) == pytest.approx(1.0)
    assert pieces.table({"m": s}).splitlines()[2].startswith("| m | 2 | 1 | 0.500 |")


@pytest.mark.parametrize("stage", [[], ["--no-join"], ["--raw-masks"]])
def test_the_command_scores_a_model_on_labelled_frames(
    pieces, tiny_model, tmp_path, capsys, stage, labelled_folder
) -> None:
    """The tiny model has trained two steps: its figures are near nothing, but every labelled line
    gets one fate and the LAR is evaluate's."""
    import json

    from dislotrack.training.evaluate import load_mask_folder

    images, masks = labelled_folder(2)
    out = tmp_path / "pieces.json"
    args = [str(tiny_model), "--images", str(images), "--masks", str(masks), "--json", str(out), *stage]
    assert pieces.main(args) == 0
    (figures,) = json.loads(out.read_text()).values()
    n_lines = sum(len(f.masks) for f in load_mask_folder(images, masks))
    assert figures["lines"] == len(figures["per_line"]) == n_lines > 0
    assert sum(figures[f] for f in pieces.FATES) == pytest.approx(1.0)
    assert capsys.readouterr().out.splitlines()[3].startswith(f"| {tiny_model} | {n_lines} |")
