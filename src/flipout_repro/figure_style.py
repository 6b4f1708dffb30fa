"""What every figure of the package shares: distinct styles per series, natural legend order, labels that
keep clear of each other and of the frame, tick labels that do not overlap, and PNG + PDF output.

- Several settings of one method keep the method's hue (a paper's reader knows FlipOut is red) in
  clearly different shades, and every series of a figure has its own marker, so series stay apart in
  grey-scale print too (:func:`series_styles`).
- Legends sort numbers by value: ``epochs=4, epochs=5, epochs=40``, not ``4, 40, 5`` (:func:`natural_key`).
- A figure is written as PNG (for a quick look) and PDF (vector, for a paper) side by side
  (:func:`save_png_and_pdf`).
- A title is never cut: it is wrapped narrower until it lies inside the figure (:func:`fit_title`).
- The value axis follows the series that did not collapse: a point more than :data:`COLLAPSE_GAP`
  points below the best at its position is drawn at the axis edge with its value
  (:func:`collapsed`, :func:`mark_off_axis`), so one collapsed method cannot squeeze the others together.

A leaf: it imports nothing of the package, and matplotlib only inside the functions that draw, so run-folder figures (analysis/plots.py) and the report's
(reporting/figures.py, forest.py) share it.
"""
from __future__ import annotations

import colorsys
import re
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable, ContextManager, Hashable, Sequence

if TYPE_CHECKING:  # matplotlib is imported where a figure is drawn, not with this module
    import matplotlib
    import matplotlib.pyplot as plt

#: one marker per series of a figure, in this order (``*`` is kept for outcome-sparsity series)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "d")
LINESTYLES = ("-", "--", "-.", (0, (1, 1)), (0, (5, 1, 1, 1, 1, 1)))
#: the smallest y span (accuracy points) of an accuracy figure: one point, or a flat curve, is not zoomed into noise
MIN_ACC_SPAN = 5.0
#: accuracy points below the best at the same sparsity past which a point counts as collapsed: it is drawn
#: at the axis edge with its value instead of setting the axis range
COLLAPSE_GAP = 10.0
_NUMBER = re.compile(r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def natural_key(text: str) -> tuple:
    """Sort key that compares the numbers inside ``text`` by value ("epochs=5" before "epochs=40")."""
    parts = _NUMBER.split(str(text))
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


def shades(color: str, n: int) -> list[str]:
    """``n`` clearly different shades of ``color`` (the colour itself when ``n`` is 1), dark to light."""
    from matplotlib import colors as mcolors

    if n <= 1:
        return [mcolors.to_hex(color)]
    h, lightness, s = colorsys.rgb_to_hls(*mcolors.to_rgb(color))
    lo, hi = 0.22, 0.6  # darker and lighter than any tab: colour; the lightest still clear on white (olive, cyan)
    return [mcolors.to_hex(colorsys.hls_to_rgb(h, lo + (hi - lo) * i / (n - 1), s)) for i in range(n)]


def series_styles(series: Sequence[tuple[str, Hashable]], color_of_method) -> dict[tuple, dict]:
    """A style (``color``, ``marker``, ``ls``) for each (method, setting) in ``series`` (in the order given):
    the method's colour in one shade per setting, a marker and (per setting of one method) a line style."""
    out: dict[tuple, dict] = {}
    by_method: dict[str, list] = {}
    for method, setting in series:
        by_method.setdefault(method, [])
        if setting not in by_method[method]:
            by_method[method].append(setting)
    for i, (method, setting) in enumerate(dict.fromkeys(series)):
        settings = by_method[method]
        k = settings.index(setting)
        out[(method, setting)] = {"color": shades(color_of_method(method), len(settings))[k],
                                  "marker": MARKERS[i % len(MARKERS)], "ls": LINESTYLES[k % len(LINESTYLES)]}
    return out


def thin_ticks(positions: Sequence[float], span: float, min_gap: float, keep_first: Sequence[float] = ()) -> list:
    """The positions (axis units) whose labels fit: at least ``min_gap`` of ``span`` apart; positions in
    ``keep_first`` are placed before the others."""
    placed: list[float] = []
    for p in [*keep_first, *(p for p in positions if p not in keep_first)]:
        if all(abs(p - q) >= min_gap * span for q in placed):
            placed.append(p)
    return sorted(placed)


def keep_labels_clear(ax: plt.Axes, texts: Sequence[matplotlib.text.Annotation], pad_px: float = 2.0,
                      avoid: Sequence = ()) -> None:
    """Move annotations (offsets in points) so that none leaves the axes or overlaps another, nor the
    bounding boxes in ``avoid`` (display units); each is tried above, below, then further out."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = list(avoid)
    scale = 72.0 / fig.dpi  # display pixels -> points
    for t in texts:
        ox, oy = t.xyann
        bb = t.get_window_extent(renderer)
        h = bb.height + pad_px
        for step in (0, 1, -1, 2, -2, 3, -3, 4):
            t.xyann = (ox, oy + step * h * scale)
            bb = t.get_window_extent(renderer)
            dx = max(0.0, frame.x0 + pad_px - bb.x0) - max(0.0, bb.x1 - frame.x1 + pad_px)
            dy = max(0.0, frame.y0 + pad_px - bb.y0) - max(0.0, bb.y1 - frame.y1 + pad_px)
            if dx or dy:  # pull it back inside the frame
                t.xyann = (t.xyann[0] + dx * scale, t.xyann[1] + dy * scale)
                bb = t.get_window_extent(renderer)
            if not any(bb.overlaps(o) for o in placed):
                break
        placed.append(bb)


def collapsed(values: Sequence[float], best: Sequence[float], gap: float = COLLAPSE_GAP) -> list[bool]:
    """For each value, whether it lies more than ``gap`` below ``best`` (the best value at its position)."""
    return [v < b - gap for v, b in zip(values, best)]


def mark_off_axis(ax: plt.Axes, positions: Sequence[float], values: Sequence[float], color: str, axis: str = "y",
                  fmt: str = "{:.1f}", hollow: bool = False, text: bool = True) -> None:
    """Draw points that lie below the axis range at its low edge: a triangle pointing off the axis, in
    ``color``, with the value written beside it (``axis="y"``: the bottom edge, ``positions`` on x;
    ``axis="x"``: the left edge, ``positions`` on y)."""
    if not len(positions):
        return
    if axis == "y":
        transform, xy, marker, off, ha, va = ax.get_xaxis_transform(), lambda p: (p, 0.025), "v", (0, 5), "center", "bottom"
    else:
        transform, xy, marker, off, ha, va = ax.get_yaxis_transform(), lambda p: (0.012, p), "<", (5, 0), "left", "center"
    pts = [xy(p) for p in positions]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], ls="none", marker=marker, ms=7, color=color,
            mfc="white" if hollow else color, mec=color, transform=transform, clip_on=False, zorder=4)
    if text:
        for p, v in zip(pts, values):
            ax.annotate(fmt.format(v), p, xycoords=transform, xytext=off, textcoords="offset points", fontsize=6,
                        color=color, ha=ha, va=va, alpha=0.6 if hollow else 1.0)


def fit_title(ax: plt.Axes, title: str, wrap: Callable[[str, int], str], width: int = 95) -> None:
    """Set ``ax``'s title to ``wrap(title, width)``, re-wrapped narrower (``wrap(title, w)`` for smaller
    ``w``) and laid out again until the title lies inside the figure: a title is never cut."""
    fig = ax.figure
    for w in range(width, 19, -8):
        ax.set_title(wrap(title, w), fontsize=9)
        fig.tight_layout()
        fig.canvas.draw()
        bb, frame = ax.title.get_window_extent(), fig.bbox
        if bb.x0 >= frame.x0 - 0.5 and bb.x1 <= frame.x1 + 0.5 and bb.y1 <= frame.y1 + 0.5:
            return


def save_png_and_pdf(fig: plt.Figure, png: Path, opener: Callable[[Path, str], ContextManager[IO]]
                     ) -> list[Path]:
    """Write ``fig`` to ``png`` and to the same name with ``.pdf`` (vector), each through ``opener``
    (rundir.atomic_open: written atomically, never through a planted symlink); close it."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    paths = [png, png.with_suffix(".pdf")]
    if type(fig.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine" and hasattr(fig, "_layout_engine"):
        # fig.tight_layout() leaves a do-nothing placeholder engine behind, and savefig lays out (draws
        # without rendering) every figure that has an engine before it draws it: a whole extra pass of
        # text layout per file that changes nothing here (the same bytes: tests/analysis/test_plots_speed.py).
        fig._layout_engine = None
    try:
        for path, fmt in zip(paths, ("png", "pdf")):
            with opener(path, "wb") as fh:
                fig.savefig(fh, format=fmt)
    finally:
        if "matplotlib.pyplot" in sys.modules:  # a pyplot figure: free it (an Agg-canvas Figure has no manager)
            sys.modules["matplotlib.pyplot"].close(fig)
    return paths
