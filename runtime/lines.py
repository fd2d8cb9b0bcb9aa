"""Per-frame post-processing: N probability masks -> deduplicated dislocation centrelines.

Steps (method of Govind et al.): threshold; drop tiny masks; split a mask holding separate lines;
merge duplicates (two masks whose Dice loss < 0.5 are one dislocation, keep the better one: connected,
then higher mean probability); Lee skeleton; longest path through it; 50 equally spaced points; the
natural cubic spline through them; length and curvature. Beyond the papers: a mask whose skeleton
branches is cut into its branches, and pieces that continue each other are joined.

Everything after the one vectorised threshold works on each mask's bounding box, never on the full
frame, because a frame has N = 20 masks and the budget is a few milliseconds per frame on one core.
For the same reason the per-candidate steps that cost more in calls than in pixels (labelling,
thinning, walking the skeletons, smoothing, resampling, the spline solve, the fragment test) run
once per frame over all candidates, arranged so that each candidate's result is exactly what it
would be alone; from the skeletons on, all paths are one array laid end to end plus their lengths.
What remains is mostly the threshold (one memory-bound pass over the float32 stack), the row test
that bounds each mask and the Lee thinning itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.linalg.lapack import dgtsv
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components, dijkstra
from scipy.spatial import cKDTree

from dislotrack.runtime.results import N_POINTS, Line
from dislotrack.runtime.thinning import lee_skeleton

_EIGHT = np.ones((3, 3), dtype=bool)
_PACK_WIDTH = 512  # canvas width for thinning many crops in one call (wider crops widen it)
_PROBE_STEP = 7  # fragment test: every 7th point first, all points only for pairs that pass
_TRUNCATE = 4.0  # Gaussian kernel radius in sigmas (scipy's default, made explicit for smooth_paths)
_OFFSETS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)


@dataclass(frozen=True)
class LineConfig:
    """Post-processing settings (the threshold comes with each call: the model's, or the user's)."""

    min_pixels: int = 20  # fewer pixels than this is noise, not a dislocation
    duplicate_dice_loss: float = 0.5  # below this two masks are one dislocation (the paper's rule)
    prob_tolerance: float = 0.05  # duplicates closer than this in mean probability: keep the larger
    fragment_px: float = 3.0  # a line whose points all lie this close to a longer line is a fragment
    # pieces of one mask closer than ~2 * gap_px are one line with a break; kept small because the
    # lines of a pile-up converge to a few pixels and a wider bridge glues neighbours together
    gap_px: int = 1
    min_length_px: float = 8.0  # shorter lines, after joining, are dropped
    # pieces shorter than this are dropped before the fragment test and joining; a piece shorter
    # than min_length_px may then still join others into a line long enough (a faint line the model
    # marks in short dabs). With the shipped model, 2 px raised real LAR on the first 10 labelled
    # frames of tanaka-8um from 0.1225 to 0.1325, on the other 49 from 0.074 to 0.081, and on
    # held-out synthetic m2 from 0.139 to 0.145, but on the clean pile-ups (30 frames, seeds 11-16)
    # it joined neighbours' dabs: 7 ID switches instead of 5, recall 0.85 / 0.83 instead of
    # 0.91 / 0.84 on the two crowded seeds. Tracking pile-ups comes first, so the default keeps
    # pieces as long as lines (session 29, docs/training-log.md).
    min_piece_px: float = 8.0
    # a piece shorter than min_length_px says little about its direction: it joins another only
    # within this gap along the other's direction and join_lateral_px across it, with no allowance
    # for the gap (pieces of 8 px and more: join_gap_px, and 30 % of the gap more across). With
    # min_piece_px 2 the clean pile-ups then track as with the default (5 ID switches, the same
    # recall), and held-out synthetic m2 LAR rises 0.139 -> 0.144, real centreline recall 0.596 ->
    # 0.609 on the 49 frames; real LAR moves little (first 10: 0.1225 -> 0.1215, other 49: 0.0744
    # -> 0.0764), so the default stays (session 30). The allowance across was what joined
    # neighbours' dabs: without it 24 px of gap costs no ID switch either.
    join_short_gap_px: float = 10.0
    max_width_px: float = 20.0  # wider than this (pixels / bounding-box diagonal) is a blob, not a line
    smooth_px: float = 2.0  # Gaussian smoothing of the skeleton path before the spline (staircase)
    n_points: int = N_POINTS
    # a curved dislocation often changes mask where it turns: pieces whose ends continue each other
    # (gap up to join_gap_px, or overlapping up to join_overlap_px, ends within join_lateral_px of
    # each other's direction, directions within join_angle_deg) are one line; 0 turns joining off.
    # 24 px: on the real frames a dislocation's pieces lie further apart than on synthetic ones
    # (chosen on the first 10 labelled frames, checked on the other 49 and on synthetic images)
    join_gap_px: float = 24.0
    join_overlap_px: float = 6.0
    join_lateral_px: float = 2.5
    join_angle_deg: float = 35.0
    # pieces that overlap along a bend: their ends lie a stretch of the bend apart, so their
    # directions differ by the turn in between; each lying on the other is the stronger evidence
    join_overlap_angle_deg: float = 60.0
    join_tangent_px: float = 6.0  # an end's direction: from the point this far along the line
    # a mask holding lines that cross or touch (a dislocation ending on a slip trace the model also
    # marked, two arcs of a pile-up) has a skeleton where three or more branches meet: such a mask
    # is cut into its branches of at least this length, each taking the mask pixels nearest to it,
    # and joining puts back together the branches that continue each other. 1 px cuts at every
    # junction; 0 keeps every mask whole. Chosen on the first 10 labelled frames of tanaka-8um
    # (LAR 0.073 uncut, 0.122 at 1 px, 0.109 at 4, 0.092 at 8), checked on the other 49 (0.065,
    # 0.074, 0.074, 0.071) and on held-out synthetic m2 (0.133, 0.139, 0.137, 0.137).
    split_branch_px: float = 1.0

    def unjoined(self) -> LineConfig:
        """The same settings with joining off: one line per mask piece (``--no-join``); masks are not
        cut at crossings either, because joining is what reassembles the cut branches."""
        return replace(self, join_gap_px=0.0, split_branch_px=0.0)


@dataclass(frozen=True)
class Candidate:
    """One connected piece of one thresholded mask, kept as a crop plus its offset in the frame."""

    mask: np.ndarray  # bool (h, w) crop
    y0: int
    x0: int
    n_pixels: int
    mean_prob: float
    channel: int
    connected: bool  # one 8-connected piece (so its Lee skeleton is one connected skeleton)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        return self.y0, self.x0, self.y0 + h, self.x0 + w


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """8-neighbour dilation by ``px`` pixels as shifted ORs: equal to ``binary_dilation`` with a 3x3
    square, ~25x cheaper on the large crops of masks that hold many lines."""
    for _ in range(px):
        rows = mask.copy()
        rows[1:] |= mask[:-1]
        rows[:-1] |= mask[1:]
        mask = rows.copy()
        mask[:, 1:] |= rows[:, :-1]
        mask[:, :-1] |= rows[:, 1:]
    return mask


def _pieces(mask: np.ndarray, gap_px: int) -> tuple[np.ndarray, int]:
    """Label the pieces of a crop, pieces closer than the gap counting as one (labels on ``mask`` only)."""
    labels, n = ndimage.label(grow(mask, gap_px), structure=_EIGHT)
    np.multiply(labels, mask, out=labels)
    return labels, n


def _mean(prob: np.ndarray, mask: np.ndarray, n: int) -> float:
    """Mean probability under a mask: ``prob[mask].mean()``'s float32 sum and division, without
    its per-call overhead."""
    return float(np.add.reduce(prob[mask]) / n)


def _candidate(prob: np.ndarray, part: np.ndarray, dy: int, dx: int, channel: int, connected: bool):
    h, w = part.shape
    p = prob[dy : dy + h, dx : dx + w]
    n = int(np.count_nonzero(part))
    return Candidate(part, dy, dx, n, _mean(p, part, n), channel, connected)


def mask_candidates(
    prob: np.ndarray, mask: np.ndarray, part: np.ndarray, channel: int, config: LineConfig
) -> list[Candidate]:
    """Split one thresholded mask (cropped to its bounding box) into line candidates; ``part`` is
    the id of the 8-connected part each of its pixels belongs to, in raster order (ids may be
    shared with other masks' parts, but not the parts themselves).

    Pieces closer than the gap are one line with a break; pieces farther apart are separate lines
    that one mask happened to hold; pieces below ``min_pixels`` are noise.
    """
    labels, n = _pieces(mask, config.gap_px)
    flat = np.flatnonzero(mask)  # statistics over the mask's pixels only, not its whole box
    piece = labels.ravel()[flat]  # every piece holds mask pixels: labels 1..n all occur
    sizes = np.bincount(piece, minlength=n + 1)
    # 8-connected parts per gapped piece (each part lies in exactly one gapped piece; ids not in
    # this mask stay in bin 0, the background's)
    piece_of = np.zeros(int(part.max()) + 1, dtype=np.int64)
    piece_of[part] = piece
    n_sub = np.bincount(piece_of, minlength=n + 1)
    # boxes of the pieces from their pixels, grouped by piece in raster order (first and last
    # pixel: top and bottom row); a box search over the whole crop costs more
    rows, cols = np.divmod(flat[np.argsort(piece, kind="stable")], mask.shape[1])
    start = np.cumsum(sizes) - sizes
    left, right = np.minimum.reduceat(cols, start[1:]), np.maximum.reduceat(cols, start[1:])
    out = []
    for k in np.flatnonzero(sizes >= config.min_pixels).tolist():
        if k == 0:
            continue
        y0, x0 = int(rows[start[k]]), int(left[k - 1])
        sub = labels[y0 : int(rows[start[k] + sizes[k] - 1]) + 1, x0 : int(right[k - 1]) + 1] == k
        out.append(_candidate(prob, sub, y0, x0, channel, n_sub[k] == 1))
    return out


def _rows_any(masks: np.ndarray) -> np.ndarray:
    """Which rows of each mask hold a pixel: bools read eight at a time where rows split into
    whole 64-bit words (~20 % cheaper than a bool reduction, and this reads the whole stack)."""
    if masks.shape[-1] % 8 == 0 and masks.flags.c_contiguous:
        return masks.view(np.uint64).any(axis=-1)
    return masks.any(axis=-1)


def find_candidates(probs: np.ndarray, threshold: float, config: LineConfig) -> list[Candidate]:
    """All line candidates of a frame's (N, H, W) probabilities, in frame coordinates.

    One vectorised threshold and row reduction over the whole stack; then each mask works on the
    band of rows it occupies and on its bounding box. The 8-connected parts of all masks are
    labelled in one call on a packed canvas (boxes one zero pixel apart cannot connect): most masks
    hold one part, and then nothing else needs labelling.
    """
    masks = probs > threshold
    rows_any = _rows_any(masks)
    channels = np.flatnonzero(rows_any.any(axis=1))
    rows = rows_any[channels]
    top = rows.argmax(axis=1).tolist()
    bottom = (masks.shape[1] - rows[:, ::-1].argmax(axis=1)).tolist()
    boxes = []
    for c, y0, y1 in zip(channels.tolist(), top, bottom, strict=True):
        cols = masks[c, y0:y1].any(axis=0)
        x0, x1 = int(cols.argmax()), cols.size - int(cols[::-1].argmax())
        crop = masks[c, y0:y1, x0:x1]
        n = int(np.count_nonzero(crop))
        if n >= config.min_pixels:
            boxes.append((c, y0, x0, crop, n))
    if not boxes:
        return []
    origins, size = pack([b[3].shape for b in boxes], max(_PACK_WIDTH, *(b[3].shape[1] for b in boxes)))
    canvas = np.zeros(size, dtype=bool)
    for (_, _, _, crop, _), (y, x) in zip(boxes, origins, strict=True):
        canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    parts, n_parts = ndimage.label(canvas, structure=_EIGHT)
    ids = [
        parts[y : y + b[3].shape[0], x : x + b[3].shape[1]][b[3]]
        for b, (y, x) in zip(boxes, origins, strict=True)
    ]
    owner = np.zeros(n_parts + 1, dtype=np.int64)
    for k, part in enumerate(ids):
        owner[part] = k
    per_box = np.bincount(owner[1:], minlength=len(boxes))
    out = []
    for k, (c, y0, x0, crop, n) in enumerate(boxes):
        h, w = crop.shape
        prob = probs[c, y0 : y0 + h, x0 : x0 + w]
        if per_box[k] == 1:
            out.append(Candidate(crop, y0, x0, n, _mean(prob, crop, n), c, True))
            continue
        for cand in mask_candidates(prob, crop, ids[k], c, config):
            out.append(shift_candidate(cand, y0, x0))
    return out


def shift_candidate(c: Candidate, dy: int, dx: int) -> Candidate:
    return Candidate(c.mask, c.y0 + dy, c.x0 + dx, c.n_pixels, c.mean_prob, c.channel, c.connected)


def overlap(a: Candidate, b: Candidate, boxes: tuple[tuple, tuple] | None = None) -> int:
    """Pixels two candidates share, computed on the intersection of their bounding boxes only
    (``boxes``: their ``bbox`` when the caller has them at hand)."""
    (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1) = boxes or (a.bbox, b.bbox)
    y0, x0, y1, x1 = max(ay0, by0), max(ax0, bx0), min(ay1, by1), min(ax1, bx1)
    if y0 >= y1 or x0 >= x1:
        return 0
    ma = a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
    mb = b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return int(np.count_nonzero(ma & mb))


def dice_loss(a: Candidate, b: Candidate, boxes: tuple[tuple, tuple] | None = None) -> float:
    return 1.0 - 2.0 * overlap(a, b, boxes) / (a.n_pixels + b.n_pixels)


def better(a: Candidate, b: Candidate, prob_tolerance: float) -> bool:
    """Is ``a`` the better of two duplicates: connected first, then higher mean probability.

    Mean probabilities within ``prob_tolerance`` count as equal and then the larger mask wins, so a
    spare mask holding a confident fragment does not replace the whole line.
    """
    if a.connected != b.connected:
        return a.connected
    if abs(a.mean_prob - b.mean_prob) > prob_tolerance:
        return a.mean_prob > b.mean_prob
    return a.n_pixels > b.n_pixels


def deduplicate(cands: Sequence[Candidate], config: LineConfig) -> list[Candidate]:
    """One candidate per dislocation; the paper's rule: Dice loss < 0.5 means the same dislocation.

    Only kept candidates whose bounding boxes intersect are compared (one vectorised test of all
    pairs first), so a frame with hundreds of pieces does not cost hundreds squared pixel
    comparisons; the greedy pass itself is list work.
    """
    order = sorted(cands, key=lambda c: (c.connected, c.mean_prob, c.n_pixels), reverse=True)
    if len(order) < 2:
        return list(order)
    boxes = [c.bbox for c in order]
    b = np.array(boxes)
    meets = (
        (b[:, None, 0] < b[None, :, 2])
        & (b[:, None, 2] > b[None, :, 0])
        & (b[:, None, 1] < b[None, :, 3])
        & (b[:, None, 3] > b[None, :, 1])
    ).tolist()
    kept: list[int] = []  # indices into order
    for i, c in enumerate(order):
        dup = next(
            (
                h
                for h, j in enumerate(kept)
                if meets[i][j] and dice_loss(c, order[j], (boxes[i], boxes[j])) < config.duplicate_dice_loss
            ),
            None,
        )
        if dup is None:
            kept.append(i)
        elif better(c, order[kept[dup]], config.prob_tolerance):
            kept[dup] = i
    return [order[i] for i in kept]


def point_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance of each point to the nearest segment of a polyline: (..., P) from (..., P, 2) points
    and (..., Q, 2) polylines (leading axes batch several point sets against several polylines).
    Written per coordinate: sums over an axis of length 2 cost more than the arithmetic."""
    px, py = points[..., :, None, 0], points[..., :, None, 1]
    ax, ay = polyline[..., None, :-1, 0], polyline[..., None, :-1, 1]
    abx, aby = polyline[..., None, 1:, 0] - ax, polyline[..., None, 1:, 1] - ay
    denom = np.maximum(abx * abx + aby * aby, 1e-12)
    t = np.clip(((px - ax) * abx + (py - ay) * aby) / denom, 0.0, 1.0)
    dx, dy = px - (ax + t * abx), py - (ay + t * aby)
    return np.sqrt(dx * dx + dy * dy).min(axis=-1)


def _pad(mask: np.ndarray, pad: int) -> np.ndarray:
    """Zero border around a crop (np.pad costs ~30x more for these small arrays)."""
    out = np.zeros((mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad), dtype=bool)
    out[pad : pad + mask.shape[0], pad : pad + mask.shape[1]] = mask
    return out


def neighbour_table(skel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skeleton pixel coordinates and, per pixel, the indices of its 8 neighbours (-1: none).
    ``skel`` needs a zero border (flat indices of neighbours would wrap round the rows). Flat
    indices first: a 2-d ``np.nonzero`` costs ~4x more."""
    flat = np.flatnonzero(skel)
    w = skel.shape[1]
    ys, xs = np.divmod(flat, w)
    index = np.full(skel.size, -1, dtype=np.int32 if flat.size < 2**31 else np.int64)
    index[flat] = np.arange(flat.size)
    steps = np.array([dy * w + dx for dy, dx in _OFFSETS])
    return ys, xs, index[flat[:, None] + steps[None, :]].astype(np.int64)


def skeleton_graph(ys: np.ndarray, xs: np.ndarray, table: np.ndarray) -> csr_matrix:
    """The skeleton's pixel graph (both directions), steps of 1 px and diagonal steps of √2 px."""
    k = ys.size
    src, nb = np.divmod(np.flatnonzero(table >= 0), table.shape[1])
    dst = table[src, nb]
    w = np.where(np.abs(ys[src] - ys[dst]) + np.abs(xs[src] - xs[dst]) == 2, np.sqrt(2.0), 1.0)
    return coo_matrix((w, (src, dst)), shape=(k, k)).tocsr()


def _graph_longest_path(ys: np.ndarray, xs: np.ndarray, table: np.ndarray) -> list[int]:
    """Longest shortest path of a branched skeleton: two Dijkstra sweeps on its pixel graph."""
    graph = skeleton_graph(ys, xs, table)
    n_comp, comp = connected_components(graph, directed=False)
    start = int(np.flatnonzero(comp == np.bincount(comp).argmax())[0]) if n_comp > 1 else 0
    dist = dijkstra(graph, directed=True, indices=start)
    u = int(np.argmax(np.where(np.isfinite(dist), dist, -1.0)))
    dist, pred = dijkstra(graph, directed=True, indices=u, return_predecessors=True)
    v = int(np.argmax(np.where(np.isfinite(dist), dist, -1.0)))
    path = [v]
    while path[-1] != u:
        path.append(int(pred[path[-1]]))
    return path[::-1]


def pack(shapes: Sequence[tuple[int, int]], width: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Shelf packing: origin of each (h, w) box on one canvas, boxes one zero pixel apart, tallest
    first; and the canvas shape."""
    origins = [(0, 0)] * len(shapes)
    y = x = shelf = used = 0
    for i in sorted(range(len(shapes)), key=lambda i: -shapes[i][0]):
        h, w = shapes[i][0] + 1, shapes[i][1] + 1
        if x > 0 and x + w > width:
            y, x, shelf = y + shelf, 0, 0
        origins[i] = (y + 1, x + 1)
        x, shelf, used = x + w, max(shelf, h), max(used, x + w)
    return origins, (y + shelf + 1, used + 1)


def skeleton_rows(masks: Sequence[np.ndarray], bridges: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Longest path through the Lee skeleton of each crop, as row/col coordinates in the crop: all
    paths end to end, (M, 2), and each one's length; ``bridges[i]``: close gaps of up to this
    many pixels first (see ``skeleton_branches``)."""
    rc, lengths, _ = skeleton_branches(masks, bridges)
    return rc, lengths


def skeleton_branches(
    masks: Sequence[np.ndarray], bridges: Sequence[int], split_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``skeleton_rows`` plus the crop each path belongs to: with ``split_px`` > 0, a crop whose
    skeleton has a crossing (``crossing_branches``) gives one path per branch instead of its
    longest path, in crop order.

    All crops are thinned in one call on a packed canvas: Lee thinning decides each pixel from its
    3x3 neighbours only, so crops one zero pixel apart are thinned exactly as alone, without the
    per-call cost that dominates for small crops. A thin line's skeleton is usually a simple path,
    walked directly (cheap). Otherwise its 8-neighbour pixel graph gets two Dijkstra sweeps (farthest
    node from any node, then farthest from that): the longest path, exact for the tree a line's
    skeleton is, dropping spurs grown at kinks.
    """
    if not masks:
        return np.empty((0, 2)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    works = []  # (array, zero border still to add): masks go onto the canvas as they are
    for mask, bridge in zip(masks, bridges, strict=True):
        if bridge > 0:
            works.append((ndimage.binary_closing(_pad(mask, 1 + bridge), _EIGHT, iterations=bridge), 0))
        else:
            works.append((mask, 1))
    shapes = [(a.shape[0] + 2 * b, a.shape[1] + 2 * b) for a, b in works]
    origins, size = pack(shapes, max(_PACK_WIDTH, *(w for _, w in shapes)))
    canvas = np.zeros(size, dtype=bool)
    # only read under skeleton pixels, all inside boxes; 16 bits sort by radix (walks group by crop)
    owner = np.empty(size, dtype=np.uint16 if len(works) < 2**16 else np.int32)
    for k, ((a, b), (h, w), (y, x)) in enumerate(zip(works, shapes, origins, strict=True)):
        canvas[y + b : y + b + a.shape[0], x + b : x + b + a.shape[1]] = a
        owner[y : y + h, x : x + w] = k
    ys, xs, table = neighbour_table(lee_skeleton(canvas))
    of = owner[ys, xs]  # nodes of each crop, in its raster order (the canvas's order within a box)
    linked = table >= 0
    degree = np.bitwise_count(linked.view(np.uint64)).ravel().astype(np.int64)  # 8 bools: a word
    n_nodes = np.bincount(of, minlength=len(works))
    branched = np.bincount(of[degree > 2], minlength=len(works))
    ends = np.flatnonzero(degree == 1)
    walked = (n_nodes >= 2) & (branched == 0) & (np.bincount(of[ends], minlength=len(works)) == 2)
    shift = np.array([(y + 1 + b, x + 1 + b) for (y, x), b in zip(origins, bridges, strict=True)])
    rc = (np.stack([ys, xs], axis=1) - shift[of]).astype(np.float64)
    walks = _walk_all(table[linked], degree, of, ends[walked[of[ends]]])
    walk_lengths = np.bincount(of[walks], minlength=len(works))  # a loop beside the path: not walked
    if walked.all():  # the usual frame: every skeleton a simple path
        return rc[walks], walk_lengths, np.arange(len(works))
    by_crop = np.argsort(of, kind="stable")
    first = np.cumsum(n_nodes) - n_nodes
    walk_first = np.cumsum(walk_lengths) - walk_lengths
    pieces, crop_of = [], []
    for k, (n, f) in enumerate(zip(n_nodes.tolist(), first.tolist(), strict=True)):
        nodes = by_crop[f : f + n]
        if walked[k]:
            nodes = walks[walk_first[k] : walk_first[k] + walk_lengths[k]]
        elif n >= 2:
            local = np.full(ys.size, -1, dtype=np.int64)
            local[nodes] = np.arange(n)
            sub = table[nodes]
            sub = np.where(sub >= 0, local[sub], -1)
            branches = crossing_branches(ys[nodes], xs[nodes], sub, split_px) if split_px > 0 else None
            if branches:
                pieces += [nodes[b] for b in branches]
                crop_of += [k] * len(branches)
                continue
            nodes = nodes[_graph_longest_path(ys[nodes], xs[nodes], sub)]
        pieces.append(nodes)
        crop_of.append(k)
    lengths = np.array([len(n) for n in pieces], dtype=np.int64)
    return rc[np.concatenate(pieces)], lengths, np.array(crop_of, dtype=np.int64)


def crossing_branches(ys: np.ndarray, xs: np.ndarray, table: np.ndarray, min_px: float) -> list | None:
    """The branches of a skeleton with a crossing, each as a path (node indices), or None.

    Junctions are the pixels with three or more of the 8 neighbours; without them the skeleton falls into
    branches, each a simple path. It has a crossing where a cluster of touching junction pixels
    meets three or more branches of at least ``min_px`` pixels; shorter branches are spurs (grown
    at kinks of one line, or a line's last pixels beyond the crossing) and are left out.
    """
    linked = table >= 0
    junction = linked.sum(axis=1) > 2
    src, nb = np.nonzero(linked)
    dst = table[src, nb]
    k = ys.size

    def components(keep: np.ndarray) -> np.ndarray:
        both = keep[src] & keep[dst]
        graph = coo_matrix((np.ones(int(both.sum())), (src[both], dst[both])), shape=(k, k)).tocsr()
        return connected_components(graph, directed=False)[1]

    branch = np.where(junction, -1, components(~junction))
    size = np.bincount(branch[~junction], minlength=k)
    long = (branch >= 0) & (size[np.maximum(branch, 0)] >= min_px)
    cluster = components(junction)
    touch = junction[src] & long[dst]  # a junction pixel beside a long branch's pixel
    pairs = np.unique(np.stack([cluster[src[touch]], branch[dst[touch]]], axis=1), axis=0)
    if not pairs.size or np.bincount(pairs[:, 0]).max() < 3:
        return None
    return _branch_paths(ys, xs, table, np.where(long, branch, -1))


def _branch_paths(ys: np.ndarray, xs: np.ndarray, table: np.ndarray, branch: np.ndarray) -> list[np.ndarray]:
    """Node indices of each branch (``branch``: its id per node, -1 for none) in path order: the
    simple paths walked all at once (``_walk_all``), single pixels as they are, and a branch that
    closes on itself through its longest path."""
    kept = branch >= 0
    inner = np.where(table >= 0, table, 0)
    sub = np.where((table >= 0) & kept[inner] & kept[:, None], table, -1)
    linked = sub >= 0
    degree = linked.sum(axis=1)
    ids = np.unique(branch[kept])
    ends = np.flatnonzero(kept & (degree == 1))
    n_ends = np.bincount(branch[ends], minlength=int(ids.max()) + 1)
    walked = ends[n_ends[branch[ends]] == 2]
    paths = {}
    if walked.size:
        order = _walk_all(sub[linked], degree, branch, walked)
        cuts = np.flatnonzero(np.diff(branch[order])) + 1
        paths = dict(zip(branch[order[np.r_[0, cuts]]].tolist(), np.split(order, cuts), strict=True))
    out = []
    for b in ids.tolist():
        if b in paths:
            out.append(paths[b])
            continue
        nodes = np.flatnonzero(branch == b)
        if nodes.size > 2:  # a loop
            local = np.full(branch.size, -1, dtype=np.int64)
            local[nodes] = np.arange(nodes.size)
            loop = np.where(sub[nodes] >= 0, local[np.maximum(sub[nodes], 0)], -1)
            nodes = nodes[_graph_longest_path(ys[nodes], xs[nodes], loop)]
        out.append(nodes)
    return out


def _walk_all(neighbours: np.ndarray, degree: np.ndarray, of: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Nodes of the simple paths between ``ends`` (both ends of each walked crop, in raster order)
    in path order from each crop's first end, crop after crop. One breadth-first search from a node
    linked to every start: along a simple path it meets the nodes in path order. ``neighbours``:
    each node's neighbour indices, node after node."""
    k = degree.size
    starts = ends[np.argsort(of[ends], kind="stable")][::2]  # two ends per crop, the first starts
    indptr = np.zeros(k + 2, dtype=np.int64)
    np.cumsum(degree, out=indptr[1:-1])
    indptr[-1] = indptr[-2] + starts.size
    graph = csr_matrix(
        (np.ones(indptr[-1]), np.concatenate([neighbours, starts]), indptr), shape=(k + 1, k + 1)
    )
    order = breadth_first_order(graph, k, directed=True, return_predecessors=False)[1:]
    return order[np.argsort(of[order], kind="stable")]


def skeleton_paths(masks: Sequence[np.ndarray], bridges: Sequence[int]) -> list[np.ndarray]:
    """``skeleton_rows`` as one (K, 2) array per crop."""
    rc, lengths = skeleton_rows(masks, bridges)
    return np.split(rc, np.cumsum(lengths)[:-1])


def skeleton_path(mask: np.ndarray, bridge_px: int = 0) -> np.ndarray:
    """Longest path through the Lee skeleton of one crop (see ``skeleton_paths``)."""
    return skeleton_paths([mask], [bridge_px])[0]


def _ragged(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and position-in-row of every element of rows of ``lengths`` laid end to end."""
    starts = np.cumsum(lengths) - lengths
    row = np.repeat(np.arange(lengths.size), lengths)
    return row, np.arange(row.size) - starts[row]


def smooth_rows(points: np.ndarray, lengths: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth pixel paths laid end to end ((M, 2) points, each path's length); ends are
    padded by point reflection so straight lines stay put; paths under 3 points stay as they are.

    All paths go through one filter call (per-call overhead dominated): each block carries
    ``radius`` copies of its end values, which is the filter's own 'nearest' extension, so every
    path is filtered exactly as if it were alone. The blocks are one gather for all paths: every
    element is ``2 * a - b`` for two points of its path (``a = b`` inside it, exactly ``a``).
    """
    radius = int(_TRUNCATE * sigma + 0.5)
    todo = np.flatnonzero(lengths >= 3) if sigma > 0 else np.empty(0, dtype=np.int64)
    if not todo.size:
        return points
    n = lengths[todo]
    pad = np.minimum(n - 1, int(np.ceil(3 * sigma)))
    first = (np.cumsum(lengths) - lengths)[todo]  # each path's first point
    size = 2 * radius + 2 * pad + n
    row, t = _ragged(size)
    f, m, p = first[row], n[row] - 1, pad[row]  # m: a path's last point
    # position along the path, the pads and the ends past them counted from its head (-p .. m + p)
    k = np.minimum(np.maximum(t - radius, 0), 2 * p + m) - p
    # block elements: 2 * a - b; the pads reflect the path through its end points
    a = f + np.minimum(np.maximum(k, 0), m)
    b = f + m - np.abs(m - np.abs(k))
    smooth = ndimage.gaussian_filter1d(
        2 * points[a] - points[b], sigma, axis=0, mode="nearest", truncate=_TRUNCATE, radius=radius
    )
    row, t = _ragged(n)
    inside = (np.cumsum(size) - size + radius + pad)[row] + t
    if todo.size == lengths.size:
        return smooth[inside]
    out = points.copy()
    out[first[row] + t] = smooth[inside]
    return out


def smooth_paths(paths: Sequence[np.ndarray], sigma: float) -> list[np.ndarray]:
    """``smooth_rows`` for a list of (K, 2) paths."""
    if not paths:
        return []
    lengths = np.array([len(xy) for xy in paths], dtype=np.int64)
    return np.split(smooth_rows(np.concatenate(paths), lengths, sigma), np.cumsum(lengths)[:-1])


def spline_derivatives(pts: np.ndarray, h: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and second derivatives, at the knots, of the natural cubic spline through (..., n, 2)
    points spaced ``h`` (scalar or one per leading index) apart in arc length. One tridiagonal
    solve serves both coordinates of every line: the matrix depends on ``n`` only."""
    n = pts.shape[-2]
    h = np.asarray(h, dtype=np.float64)[..., None, None]
    rhs = 6.0 / h**2 * (pts[..., 2:, :] - 2 * pts[..., 1:-1, :] + pts[..., :-2, :])
    ones = np.ones(n - 3)
    columns = np.moveaxis(rhs, -2, 0).reshape(n - 2, -1)
    solved = dgtsv(ones, np.full(n - 2, 4.0), ones, columns)[3]  # LAPACK tridiagonal solve
    m = np.zeros_like(pts)
    m[..., 1:-1, :] = np.moveaxis(solved.reshape(n - 2, *rhs.shape[:-2], rhs.shape[-1]), 0, -2)
    d1 = np.empty_like(pts)
    d1[..., :-1, :] = (pts[..., 1:, :] - pts[..., :-1, :]) / h - h * (2 * m[..., :-1, :] + m[..., 1:, :]) / 6
    h_last = h[..., 0, :]
    d1[..., -1, :] = (pts[..., -1, :] - pts[..., -2, :]) / h_last + h_last * (
        m[..., -2, :] + 2 * m[..., -1, :]
    ) / 6
    return d1, m


def equally_spaced_many(
    points: np.ndarray, lengths: np.ndarray, n_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """``geometry.equally_spaced`` of many paths laid end to end ((M, 2) points, each path's
    length) with the same arithmetic, so the same numbers: (P, n_points, 2) points and (P,) arc
    lengths. Paths padded to one width: the running sums along a row are the same additions, and
    the padding lies beyond every row's end."""
    n_paths = lengths.size
    row, col = _ragged(lengths)
    xy = np.zeros((n_paths, int(lengths.max()), 2))
    xy[row, col] = points
    s = np.zeros(xy.shape[:2])
    np.cumsum(np.hypot(*np.moveaxis(np.diff(xy, axis=1), 2, 0)), axis=1, out=s[:, 1:])
    last = lengths - 1
    r = np.arange(n_paths)[:, None]
    total = s[r[:, 0], last]
    u = np.arange(n_points) * (total / max(n_points - 1, 1))[:, None]
    if n_points > 1:
        u[:, -1] = total
    # np.interp: the last knot at or before u, its value if u is on it (or at the end), else the
    # chord's slope times the step from it
    j = (
        np.stack([np.searchsorted(s[i, : k + 1], u[i], side="right") for i, k in enumerate(last.tolist())])
        - 1
    )
    j1 = np.minimum(j + 1, last[:, None])
    sj, s1 = s[r, j], s[r, j1]
    on = (j == last[:, None]) | (sj == u)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.stack(
            [
                np.where(on, f[r, j], (f[r, j1] - f[r, j]) / (s1 - sj) * (u - sj) + f[r, j])
                for f in (xy[..., 0], xy[..., 1])
            ],
            axis=2,
        )
    return out, total


def fit_rows(
    points: np.ndarray, lengths: np.ndarray, n_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paths laid end to end -> equally spaced points (P, n_points, 2), arc lengths and mean
    |curvature| of the cubic spline through the points (all splines in one solve)."""
    if not lengths.size:
        return np.zeros((0, n_points, 2)), np.zeros(0), np.zeros(0)
    pts, total = equally_spaced_many(points, lengths, n_points)
    curvature = np.zeros(lengths.size)
    todo = np.flatnonzero(total > 0) if n_points >= 4 else np.empty(0, dtype=np.int64)
    if todo.size:
        d1, d2 = spline_derivatives(pts[todo], total[todo] / (n_points - 1))
        speed = np.maximum(np.hypot(d1[..., 0], d1[..., 1]), 1e-9)
        curvature[todo] = (np.abs(d1[..., 0] * d2[..., 1] - d1[..., 1] * d2[..., 0]) / speed**3).mean(axis=1)
    return pts, total, curvature


def fit_lines(paths: Sequence[np.ndarray], n_points: int) -> list[tuple[np.ndarray, float, float]]:
    """``fit_rows`` for a list of (K, 2) paths: (points, length, curvature) per path."""
    if not paths:
        return []
    lengths = np.array([len(xy) for xy in paths], dtype=np.int64)
    pts, total, curvature = fit_rows(np.concatenate(paths), lengths, n_points)
    return list(zip(pts, total.tolist(), curvature.tolist(), strict=True))


def line_like(cand: Candidate, max_width_px: float) -> bool:
    """A line's mean width is its area over its length, and its length is at least the bounding
    box's diagonal; so area / diagonal bounds the width from above, without skeletonising.
    Blobs (an untrained model, a contamination spot) are rejected before the costly steps."""
    h, w = cand.mask.shape
    return cand.n_pixels / max(np.hypot(h, w), 1.0) <= max_width_px


def candidate_rows(
    cands: Sequence[Candidate], config: LineConfig
) -> tuple[np.ndarray, np.ndarray, list[Candidate]]:
    """Skeleton paths of the candidates as frame x, y, laid end to end, each one's length (0 where a
    candidate is not a line) and the candidate it stands for: the candidate itself, or for a mask
    cut at a crossing (``LineConfig.split_branch_px``) the part of it that the path's branch owns."""
    line = [line_like(c, config.max_width_px) for c in cands]
    todo = [c for c, ok in zip(cands, line, strict=True) if ok]
    bridges = [0 if c.connected else config.gap_px for c in todo]
    rc, found, crop = skeleton_branches([c.mask for c in todo], bridges, config.split_branch_px)
    origin = np.array([(c.x0, c.y0) for c in todo], dtype=np.float64).reshape(-1, 2)
    xy = rc[:, ::-1] + np.repeat(origin[crop], found, axis=0)
    owners = [todo[k] for k in crop.tolist()]
    per_crop = np.bincount(crop, minlength=len(todo))
    cut = np.flatnonzero(per_crop > 1)
    if cut.size:
        first = np.cumsum(found) - found
        for k in cut.tolist():
            rows = np.flatnonzero(crop == k)
            parts = branch_parts(todo[k], [xy[first[r] : first[r] + found[r]] for r in rows.tolist()])
            for r, part in zip(rows.tolist(), parts, strict=True):
                owners[r] = part
    # candidates that are not lines keep a place (length 0); paths come in the candidates' order
    per_crop = per_crop.tolist()
    lengths, out, r, k = [], [], 0, 0
    for c, ok in zip(cands, line, strict=True):
        if not ok:
            lengths.append(0)
            out.append(c)
            continue
        lengths += found[r : r + per_crop[k]].tolist()
        out += owners[r : r + per_crop[k]]
        r, k = r + per_crop[k], k + 1
    return xy, np.array(lengths, dtype=np.int64), out


def branch_parts(cand: Candidate, paths: Sequence[np.ndarray]) -> list[Candidate]:
    """A candidate's mask cut between its branches: each pixel goes to the branch whose skeleton
    pixel lies nearest (``paths``: frame x, y of each branch), so the parts tile the mask. Each part
    also holds its branch's own pixels: where gaps were bridged, those may lie between the mask's
    pieces (never outside its box: a closing stays inside the bounding box)."""
    ys, xs = np.nonzero(cand.mask)
    owner = np.repeat(np.arange(len(paths)), [len(p) for p in paths])
    _, nearest = cKDTree(np.concatenate(paths)).query(np.stack([xs + cand.x0, ys + cand.y0], axis=1))
    which = owner[nearest]
    out = []
    for b, path in enumerate(paths):
        sel = which == b
        own = np.rint(path).astype(np.int64) - np.array([cand.x0, cand.y0])
        py, px = np.concatenate([ys[sel], own[:, 1]]), np.concatenate([xs[sel], own[:, 0]])
        y0, x0 = int(py.min()), int(px.min())
        mask = np.zeros((int(py.max()) - y0 + 1, int(px.max()) - x0 + 1), dtype=bool)
        mask[py - y0, px - x0] = True
        # the part's own probabilities are not at hand here: it keeps its mask's mean
        n = int(np.count_nonzero(mask))
        out.append(Candidate(mask, cand.y0 + y0, cand.x0 + x0, n, cand.mean_prob, cand.channel, True))
    return out


def paint_labels(
    shape: tuple[int, int], cands: Sequence[Candidate], ids: Sequence[int] | None = None
) -> np.ndarray:
    """(H, W) uint16 label image: ``ids[i]`` (default i + 1) on the pixels of ``cands[i]``."""
    labels = np.zeros(shape, dtype=np.uint16)
    for i, c in enumerate(cands):
        y0, x0, y1, x1 = c.bbox
        labels[y0:y1, x0:x1][c.mask] = i + 1 if ids is None else ids[i]
    return labels


def line_ends(pts: np.ndarray, length: np.ndarray, tangent_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Ends of (L, P, 2) equally spaced lines as (2L, 2) points and outward unit directions: rows
    0..L-1 are the first points, L..2L-1 the last; a direction comes from the point ``tangent_px``
    inside the line (at least one step, at most the other end)."""
    n_lines, n = pts.shape[:2]
    step = np.maximum(length / max(n - 1, 1), 1e-9)
    k = np.clip(np.round(tangent_px / step).astype(np.int64), 1, n - 1)
    rows = np.arange(n_lines)
    ends = np.concatenate([pts[:, 0], pts[:, -1]]).astype(np.float64)
    inner = np.concatenate([pts[rows, k], pts[rows, n - 1 - k]]).astype(np.float64)
    out = ends - inner
    return ends, out / np.maximum(np.hypot(out[:, 0], out[:, 1]), 1e-9)[:, None]


def continuation_chains(
    pts: np.ndarray, length: np.ndarray, config: LineConfig
) -> list[list[tuple[int, bool]]]:
    """Lines, (L, P, 2) points and lengths, grouped into chains that continue each other end to end:
    each chain lists (line, reversed) in order along it; unjoined lines are chains of one.

    Ends a and b may join when either their outward directions are opposed within
    ``join_angle_deg`` and each lies ahead of the other along the other's direction (at most
    ``join_gap_px`` ahead, or ``join_overlap_px`` behind), within ``join_lateral_px`` (+ 30 % of
    the gap) of it; or their directions are opposed within ``join_overlap_angle_deg`` and each lies
    within ``join_lateral_px`` of the other's line (two masks overlapping along a bend, however
    far). Neighbours in a pile-up end side by side with parallel directions, so they never qualify.
    A pair with a line shorter than ``min_length_px`` must lie within ``join_short_gap_px`` and
    within ``join_lateral_px`` with no allowance for the gap: a short dab's direction is a guess,
    and in a pile-up the next line's dabs lie a few px across (sessions 29-30).
    Closest ends join first; each end joins once; no loops.
    """
    n_lines = len(pts)
    if n_lines < 2 or config.join_gap_px <= 0:
        return [[(i, False)] for i in range(n_lines)]
    ends, out = line_ends(pts, length, config.join_tangent_px)
    line = np.arange(2 * n_lines) % n_lines
    # candidate pairs of ends (a < b): outward directions opposed (an end is never opposed to itself)
    loosest = max(config.join_angle_deg, config.join_overlap_angle_deg)
    a, b = np.nonzero(np.triu(-(out @ out.T) >= np.cos(np.deg2rad(loosest))))
    a, b = a[line[a] != line[b]], b[line[a] != line[b]]
    if not a.size:
        return [[(i, False)] for i in range(n_lines)]
    gap = ends[b] - ends[a]
    opposed = -(out[a] * out[b]).sum(axis=1)
    tol = config.join_lateral_px
    short = (length[line[a]] < config.min_length_px) | (length[line[b]] < config.min_length_px)
    reach = np.where(short, min(config.join_short_gap_px, config.join_gap_px), config.join_gap_px)
    slack = np.where(short, 0.0, 0.3)

    def aimed(g: np.ndarray, o: np.ndarray) -> np.ndarray:
        """The other end lies ahead along this end's direction ``o`` (``g``: from this end to it)."""
        along = (g * o).sum(axis=1)
        lateral = np.abs(g[:, 0] * o[:, 1] - g[:, 1] * o[:, 0])
        ahead = (along >= -config.join_overlap_px) & (along <= reach)
        return ahead & (lateral <= tol + slack * np.maximum(along, 0.0))

    ok = aimed(gap, out[a]) & aimed(-gap, out[b]) & (opposed >= np.cos(np.deg2rad(config.join_angle_deg)))
    lo, hi = pts.min(axis=1) - tol, pts.max(axis=1) + tol
    la, lb = line[a], line[b]
    boxed = (
        ~ok
        & (opposed >= np.cos(np.deg2rad(config.join_overlap_angle_deg)))
        & np.all(
            (ends[a] >= lo[lb]) & (ends[a] <= hi[lb]) & (ends[b] >= lo[la]) & (ends[b] <= hi[la]), axis=1
        )
    )
    k = np.flatnonzero(boxed)
    if k.size:  # overlapping along a bend: each end lies on the other's line
        ok[k] = (point_to_polyline(ends[a[k]][:, None], pts[lb[k]].astype(np.float64))[:, 0] <= tol) & (
            point_to_polyline(ends[b[k]][:, None], pts[la[k]].astype(np.float64))[:, 0] <= tol
        )
    a, b, dist = a[ok], b[ok], np.hypot(gap[ok, 0], gap[ok, 1])
    if not a.size:
        return [[(i, False)] for i in range(n_lines)]
    order = np.argsort(dist, kind="stable")
    root = list(range(n_lines))

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = root[i]
        return i

    partner: dict[int, int] = {}
    for ea, eb in zip(a[order].tolist(), b[order].tolist(), strict=True):
        ra, rb = find(ea % n_lines), find(eb % n_lines)
        if ea in partner or eb in partner or ra == rb:
            continue
        partner[ea], partner[eb] = eb, ea
        root[ra] = rb
    chains, seen = [], set()
    for i in range(n_lines):
        if i in seen or (i in partner and i + n_lines in partner):
            continue  # walked already, or inside a chain: chains start at a line with a free end
        first_free = i not in partner  # the chain leaves this line through its last point
        chain, line_id, rev = [], i, not first_free
        while True:
            chain.append((line_id, rev))
            seen.add(line_id)
            exit_end = line_id if rev else line_id + n_lines
            nxt = partner.get(exit_end)
            if nxt is None:
                break
            line_id, rev = nxt % n_lines, nxt >= n_lines
        chains.append(chain)
    return chains


def chain_path(pts: np.ndarray, chain: Sequence[tuple[int, bool]]) -> np.ndarray:
    """One path through a chain's lines: each oriented along the chain, the points of the next line
    that lie behind the path's end so far (where two masks overlapped) left out."""
    lines = [pts[i][::-1] if rev else pts[i] for i, rev in chain]
    path = lines[0].astype(np.float64)
    for nxt in lines[1:]:
        end, before = path[-1], path[-2]
        ahead = np.flatnonzero((nxt - end) @ (end - before) > 0)
        if ahead.size:  # a line wholly inside the overlap adds nothing
            path = np.concatenate([path, nxt[ahead[0] :]])
    return path


def drop_fragments(lines: Sequence[Line], tol_px: float, chunk: int = 64) -> list[int]:
    """Indices of the lines that are not fragments of a longer line (see ``unfragmented``)."""
    if len(lines) < 2:
        return list(range(len(lines)))
    pts = np.stack([ln.points for ln in lines])
    return unfragmented(pts, np.array([ln.length_px for ln in lines]), tol_px, chunk)


def unfragmented(pts: np.ndarray, length: np.ndarray, tol_px: float, chunk: int = 64) -> list[int]:
    """Indices of the lines, (L, P, 2) points and their lengths, that are not fragments of a
    longer line.

    A fragment has every point within ``tol_px`` of a longer line's polyline: a spare mask often
    holds part of a line that another mask holds whole, and their Dice loss is above 0.5 when the
    part is short, so the mask rule alone keeps both. Only pairs whose boxes nest are measured, all
    at once (``chunk`` pairs per array operation, bounding memory on crowded frames).
    """
    if len(pts) < 2:
        return list(range(len(pts)))
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    inside = np.all(lo[:, None] >= lo[None] - tol_px, axis=2) & np.all(
        hi[:, None] <= hi[None] + tol_px, axis=2
    )
    short, long = np.nonzero(inside & (length[:, None] < length[None]))
    n = pts.shape[1]
    # a few points of every suspect first: most have one far from the longer line, which settles it
    probe = list(range(0, n, _PROBE_STEP))
    if probe[-1] != n - 1:
        probe.append(n - 1)
    for points in (probe, slice(None)):
        near = np.zeros(short.size, dtype=bool)
        for k in range(0, short.size, chunk):
            i, j = short[k : k + chunk], long[k : k + chunk]
            near[k : k + chunk] = np.all(point_to_polyline(pts[i][:, points], pts[j]) <= tol_px, axis=1)
        short, long = short[near], long[near]
    fragment = np.zeros(len(pts), dtype=bool)
    fragment[short] = True
    return np.flatnonzero(~fragment).tolist()


def lines_from_candidates(
    kept: Sequence[Candidate], shape: tuple[int, int], config: LineConfig, with_labels: bool = True
) -> tuple[tuple[Line, ...], np.ndarray | None]:
    """Centrelines of deduplicated candidates, fragments of longer lines dropped, plus label image.
    Paths stay laid end to end from the skeletons to the splines, and the lines' points in one
    array through the fragment test (no per-line array work)."""
    xy, lengths, owners = candidate_rows(kept, config)
    path = lengths >= 2
    xy = xy[np.repeat(path, lengths)]
    pts, total, curvature = fit_rows(
        smooth_rows(xy, lengths[path], config.smooth_px), lengths[path], config.n_points
    )
    cands = [c for c, ok in zip(owners, path.tolist(), strict=True) if ok]
    long = np.flatnonzero(total >= min(config.min_piece_px, config.min_length_px))
    pts = pts[long].astype(np.float32)  # a Line's points, as the fragment test must see them
    keep = unfragmented(pts, total[long], config.fragment_px)
    chosen = [cands[i] for i in long[keep].tolist()]
    pts, total, curvature = pts[keep], total[long][keep], curvature[long][keep]
    chains = continuation_chains(pts, total, config)
    joined = [c for c in chains if len(c) > 1]
    if joined:
        paths = [chain_path(pts, c) for c in joined]
        sizes = np.array([len(p) for p in paths], dtype=np.int64)
        fitted = iter(zip(*fit_rows(np.concatenate(paths), sizes, config.n_points), strict=True))
    lines, ids = [], np.zeros(len(chosen), dtype=np.int64)
    for chain in chains:
        members = [i for i, _ in chain]
        if len(chain) == 1:
            i = members[0]
            c = chosen[i]
            line = Line(pts[i], float(total[i]), c.mean_prob, float(curvature[i]), c.channel)
        else:
            points, length, curv = next(fitted)
            n_px = np.array([chosen[i].n_pixels for i in members], dtype=np.float64)
            prob = float(np.dot(n_px, [chosen[i].mean_prob for i in members]) / n_px.sum())
            channel = chosen[members[int(np.argmax(total[members]))]].channel
            line = Line(points.astype(np.float32), float(length), prob, float(curv), channel)
        if line.length_px < config.min_length_px:
            continue  # short pieces that joined nothing long enough
        lines.append(line)
        ids[members] = len(lines)
    labels = None
    if with_labels:  # the pieces of dropped lines paint nothing (not even 0 over a kept line)
        painted = np.flatnonzero(ids)
        labels = paint_labels(shape, [chosen[i] for i in painted.tolist()], ids[painted].tolist())
    return tuple(lines), labels


def extract_lines(
    probs: np.ndarray, threshold: float, config: LineConfig | None = None, with_labels: bool = True
) -> tuple[tuple[Line, ...], np.ndarray | None]:
    """(N, H, W) probabilities of one frame -> its dislocation lines (and their label image)."""
    config = config or LineConfig()
    kept = deduplicate(find_candidates(probs, threshold, config), config)
    return lines_from_candidates(kept, probs.shape[1:], config, with_labels)
