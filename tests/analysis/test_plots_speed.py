"""figure_style.save_png_and_pdf skips savefig's extra layout pass after tight_layout: the files
are byte for byte those savefig writes with the pass."""
from __future__ import annotations

import io

import pytest

from flipout_repro.analysis.plots import draw_layer_sparsity, draw_run_curve
from flipout_repro.figure_style import save_png_and_pdf

LAYERS = {f"fc{i}.weight": {"sparsity": s, "remaining": r, "prunable": p, "collapsed": r == 0}
          for i, (s, r, p) in enumerate([(0.99, 3072, 307200), (0.9, 3000, 30000), (1.0, 0, 1000)])}
POINTS = [{"epoch": e, "sparsity": s, "test_acc": a} for e, s, a in
          [(4, 0.0, 95.1), (8, 0.5, 95.8), (12, 0.75, 95.0), (40, 0.996, 85.1)]]


class _Sink:
    """An opener for save_png_and_pdf that keeps the bytes in memory."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def __call__(self, path, mode):
        sink = self

        class _Buf(io.BytesIO):
            def __exit__(self, *exc):
                sink.files[path.suffix] = self.getvalue()
                return super().__exit__(*exc)

        return _Buf()


@pytest.mark.parametrize("draw", [lambda: draw_layer_sparsity(LAYERS, "flipout lenet"),
                                  lambda: draw_run_curve(POINTS, "flipout lenet")])
def test_the_files_are_those_savefig_writes_with_its_layout_pass(draw, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the PDF's creation date, else it differs by the second
    before = draw()
    assert type(before.get_layout_engine()).__name__ == "PlaceHolderLayoutEngine"  # what tight_layout leaves
    want = {}
    for fmt in ("png", "pdf"):
        buf = io.BytesIO()
        before.savefig(buf, format=fmt)  # savefig's own path: a layout pass, then the drawing
        want["." + fmt] = buf.getvalue()
    sink, after = _Sink(), draw()
    save_png_and_pdf(after, tmp_path / "figure.png", sink)
    assert after.get_layout_engine() is None  # the pass was skipped
    assert sink.files.keys() == want.keys()
    assert sink.files[".png"] == want[".png"]
    assert sink.files[".pdf"] == want[".pdf"]


def test_the_run_curve_laid_out_without_rasterising_is_the_same_figure(monkeypatch):
    """draw_run_curve places its epoch labels after a layout pass that rasterises nothing
    (``draw_without_rendering``); a full ``canvas.draw()`` there gives the same files. The points put
    labels close together, so that they are moved."""
    from matplotlib.figure import Figure

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    points = POINTS + [{"epoch": 41, "sparsity": 0.9961, "test_acc": 85.0}, {"epoch": 42, "sparsity": 0.9962,
                                                                             "test_acc": 85.2}]

    def files(fig):
        out = {}
        for fmt in ("png", "pdf"):
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt)
            out[fmt] = buf.getvalue()
        return out

    ours = files(draw_run_curve(points, "t"))
    monkeypatch.setattr(Figure, "draw_without_rendering", lambda self: self.canvas.draw())
    assert ours == files(draw_run_curve(points, "t"))
