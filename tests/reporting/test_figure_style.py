"""The figures read at a glance: three settings of one method in distinct colours and markers, legends in
natural order (method.p=4, 5, 40), a single seed without error bar and n=1 in the legend, labelled ticks at
the sparsities drawn, a one-point run curve not zoomed into noise, the layer figure's empty layer drawn,
labels that keep clear of each other and the frame, and a PDF beside every PNG."""
import matplotlib.colors as mcolors
import pytest

from helpers import write_summary
from flipout_repro.analysis.plots import draw_layer_sparsity, draw_run_curve, plot_layer_sparsity, write_run_curve
from flipout_repro.figure_style import MIN_ACC_SPAN, natural_key, series_styles, shades
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import reference, tables
from flipout_repro.reporting.aggregate import make_report
from flipout_repro.reporting.figures import draw_pair


def test_natural_order_and_distinct_shades():
    labels = ["flipout (method.p=40)", "flipout (method.p=5)", "flipout (method.p=4)", "x (lam=1e-05)", "x (lam=1e-07)"]
    assert sorted(labels, key=natural_key) == ["flipout (method.p=4)", "flipout (method.p=5)", "flipout (method.p=40)",
                                               "x (lam=1e-07)", "x (lam=1e-05)"]
    assert shades("tab:red", 1) == [mcolors.to_hex("tab:red")]
    three = shades("tab:red", 3)
    assert len(set(three)) == 3
    styles = series_styles([("flipout", "a"), ("flipout", "b"), ("flipout", "c"), ("snip", "a")], lambda m: "tab:red")
    assert len({s["color"] for s in styles.values()}) == 4 and len({s["marker"] for s in styles.values()}) == 4
    assert len({styles[("flipout", k)]["ls"] for k in "abc"}) == 3


def cells_of(root):
    runs = tables.load_runs(root / "runs")
    ref = reference.published_rows(reference_dir(), set(zip(runs["model"], runs["dataset"])))
    return tables.short_labels(reference.attach_reference(tables.aggregate(runs), ref))


def test_three_settings_of_one_method_differ_and_sort_by_value(tmp_path):
    for p in (4, 40, 5):
        for seed in range(2 if p == 40 else 1):
            for s in (0.75, 0.9375):
                write_summary(tmp_path, "experiment=vgg19_cifar10", "method=flipout", f"method.p={p}", f"sparsity={s}",
                              seed=seed, acc=90.0 + p / 10 + seed)
    cells = cells_of(tmp_path)
    fig, points = draw_pair(cells[cells["protocol"] == cells["protocol"].iloc[0]], "t")
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    ours = [t for t in legend if t.startswith("flipout")]
    # the paper's cells of this protocol (SNIP: schedule=one_shot) keep schedule=periodic in the labels
    assert ours == [f"flipout (method.p={p}, schedule=periodic) [n={n}]" for p, n in ((4, 1), (5, 1), (40, 2))]
    lines = {ln.get_label(): ln for ln in ax.get_lines() if ln.get_label() in ours}
    assert len({mcolors.to_hex(ln.get_color()) for ln in lines.values()}) == 3
    assert len({ln.get_marker() for ln in lines.values()}) == 3
    # error bars only for the two-seed setting: one errorbar container with two points
    bars = [c for c in ax.containers if type(c).__name__ == "ErrorbarContainer"]
    ours_bars = [c for c in bars if c.lines[0] is not None and len(c.lines[0].get_xdata()) == 2
                 and mcolors.to_hex(c.lines[0].get_color()) == mcolors.to_hex(lines[ours[2]].get_color())]
    assert len(ours_bars) == 1
    # labelled ticks at the sparsities drawn
    labels = {t.get_text() for t in ax.get_xticklabels()}
    assert {"75", "93.75"} <= labels


def test_one_point_report_and_run_curve_are_not_zoomed_and_write_pdfs(tmp_path):
    write_summary(tmp_path, "experiment=quickstart", "method=flipout", "sparsity=0.99", "epochs=2", acc=91.3)
    fig, _ = draw_pair(cells_of(tmp_path), "t")
    lo, hi = fig.axes[0].get_ylim()
    assert hi - lo >= MIN_ACC_SPAN - 1e-9 and lo < 91.3 < hi
    assert "99" in {t.get_text() for t in fig.axes[0].get_xticklabels()}
    assert "flipout [n=1]" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    files = make_report(tmp_path, sweeps=[])["files"]
    pdf = tmp_path / "curves" / f"lenet300_100-mnist5k-{tables.load_runs(tmp_path / 'runs')['protocol'][0]}.pdf"
    assert pdf in files and pdf.read_bytes()[:5] == b"%PDF-"
    curve = draw_run_curve([{"epoch": 2, "sparsity": 0.0, "test_acc": 10.0}])
    lo, hi = curve.axes[0].get_ylim()
    assert hi - lo >= MIN_ACC_SPAN and lo < 10.0 < hi
    write_run_curve([{"epoch": 2, "sparsity": 0.0, "test_acc": 10.0}], tmp_path / "c.csv", tmp_path / "c.png")
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-" and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_run_curve_ticks_at_every_sparsity_and_labels_inside_and_apart():
    points, s = [], 0.0
    for e in range(8):
        s = 1 - (1 - s) * 0.5
        points.append({"epoch": e + 1, "sparsity": s, "test_acc": 80 + e % 3})
    fig = draw_run_curve(points)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["50", "75", "87.5", "93.75", "96.88", "98.44", "99.22",
                                                            "99.61"]
    assert "log scale of remaining weights" in ax.get_xlabel()
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    frame = ax.get_window_extent(r)
    boxes = [t.get_window_extent(r) for t in ax.texts]
    assert len(boxes) == 8
    for i, b in enumerate(boxes):
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
        assert not any(b.overlaps(o) for o in boxes[i + 1:])


def L(prunable, remaining):
    return {"prunable": prunable, "remaining": remaining, "sparsity": 1 - remaining / prunable,
            "collapsed": remaining == 0}


def test_layer_with_no_weight_left_is_drawn_and_values_stay_off_the_global_line(tmp_path):
    layers = {"fc1.weight": L(307200, 0), "fc2.weight": L(30000, 1873), "fc3.weight": L(1000, 555)}
    fig = draw_layer_sparsity(layers)
    top, bottom = fig.axes[0], fig.axes[1]
    [floor] = [ln for ln in bottom.get_lines() if ln.get_label() == "no weight left"]
    assert list(floor.get_xdata()) == [0] and floor.get_ydata()[0] == pytest.approx(bottom.get_ylim()[0])
    assert [t.get_text() for t in bottom.texts] == ["0 left"]
    # the per-layer values are tick labels of a secondary axis above the panel: none inside the bars' area
    values = top.child_axes
    assert [t.get_text() for t in values[0].get_xticklabels()] == ["100", "93.76", "44.5"]
    assert [t.get_text() for t in top.texts] == ["collapsed"]
    png = plot_layer_sparsity(layers, tmp_path / "layer_sparsity.png")
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
