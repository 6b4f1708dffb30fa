"""The report's figures as a reviewer reads them: a collapsed method drawn at the bottom edge with its value
while the y range follows the others; the x axis from the smallest to the largest sparsity drawn; legend
and title in the user's words (budget=erk, optim=adamw); a long title wrapped inside the figure, never cut;
the forest plot's x range free of a collapsed row."""
import pytest

from helpers import write_summary
from flipout_repro.config.paths import reference_dir
from flipout_repro.reporting import compare, forest, reference, tables
from flipout_repro.reporting.figures import draw_pair

BASE = ("experiment=quickstart", "epochs=2")


def cells_of(root):
    runs = tables.load_runs(root / "runs")
    ref = reference.published_rows(reference_dir(), set(zip(runs["model"], runs["dataset"])))
    cells = reference.attach_reference(tables.aggregate(runs), ref)
    return tables.short_labels(compare.attach_comparisons(cells, "global_magnitude", ""))


def write_comparison(root, seeds=2, extra=()):
    accs = {"flipout": (97.4, 96.3), "global_magnitude": (97.3, 95.6), "random": (79.0, 67.0)}
    for m, (a, b) in accs.items():
        for s, acc in ((0.5, a), (0.9375, b)):
            for seed in range(seeds):
                write_summary(root, *BASE, *extra, f"method={m}", f"sparsity={s}", seed=seed, acc=acc + 0.1 * seed)
    for seed in range(seeds):
        write_summary(root, *BASE, *extra, "method=dense", "sparsity=0", seed=seed, acc=97.6)


def texts(ax):
    return [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("seeds", [1, 5])
def test_a_collapsed_method_sits_at_the_bottom_edge_and_the_others_fill_the_y_range(tmp_path, seeds):
    write_comparison(tmp_path, seeds)
    fig, points = draw_pair(cells_of(tmp_path), "t")
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    # the y range: 95.6 .. 97.7 padded (at least MIN_ACC_SPAN), with a band for the markers; not down to 67
    assert 90 < lo < 95.6 and 97.7 < hi < 100
    # random's points: a triangle at the bottom edge each, with its value written
    written = texts(ax)
    assert "79.0" in written or "79.2" in written
    assert any(t.startswith("67.") for t in written)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("random") and t.endswith("▼") for t in legend)
    assert any(t.startswith("collapsed:") for t in legend)
    assert not any(t.startswith("flipout") and t.endswith("▼") for t in legend)
    # the points file still holds random's real accuracies
    assert sorted(round(p["acc_mean"]) for p in points if p["method"] == "random") == [67, 79]


def test_the_x_axis_runs_from_the_smallest_to_the_largest_sparsity_drawn(tmp_path):
    write_comparison(tmp_path, 1)
    ax = draw_pair(cells_of(tmp_path), "t")[0].axes[0]
    lo, hi = ax.get_xlim()
    assert 0.3 < lo < 0.5 and 0.9375 < hi < 0.97  # not out to 99.9 % where nothing is drawn
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "50" in labels and "93.75" in labels and "99.9" not in labels and "99.61" not in labels


def test_legend_and_title_speak_the_users_words(tmp_path):
    for b in ("erk", "global"):
        for m in ("flipout", "global_magnitude"):
            write_summary(tmp_path, *BASE, "optim=adamw", f"method={m}", f"budget={b}", "sparsity=0.9", acc=95.0)
    cells = cells_of(tmp_path)
    assert "optim=adamw" in cells["protocol_label"].iloc[0] and "optim.name" not in cells["protocol_label"].iloc[0]
    ax = draw_pair(cells, cells["protocol_label"].iloc[0])[0].axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "flipout (budget=erk) [n=1]" in legend and not any(".name=" in t for t in legend)
    assert "optim=adamw" in ax.get_title()


LONG = ("vgg19 on cifar10, 350 epochs, batch 128, fp32, optim.milestones=[150, 250], optim.lr=0.1, optim.momentum=0.9,"
        " optim.weight_decay=0.0005, schedule.rounding=reference, method.noise_scale=1.0\ndifference to"
        " global_magnitude, final test accuracy, mean over seeds\nevery row: budget=erk, pattern=nm, pattern.n=2,"
        " pattern.m=4")


def inside(fig):
    fig.canvas.draw()
    bb, frame = fig.axes[0].title.get_window_extent(), fig.bbox
    return frame.x0 - 0.5 <= bb.x0 and bb.x1 <= frame.x1 + 0.5 and bb.y1 <= frame.y1 + 0.5


def test_a_long_title_is_wrapped_inside_both_figures(tmp_path, monkeypatch):
    write_comparison(tmp_path, 2)
    cells = cells_of(tmp_path)
    fig, _ = draw_pair(cells, LONG)
    assert inside(fig) and "mean over seeds" in fig.axes[0].get_title().replace("\n", " ")
    drawn = {}

    def keep(fig, png, opener):
        drawn["fig"] = fig
        return [png]
    monkeypatch.setattr(forest, "save_png_and_pdf", keep)
    assert forest.plot_forest(cells, "global_magnitude", LONG, tmp_path / "f.png", tmp_path / "f.csv")
    fig = drawn["fig"]
    title = fig.axes[0].get_title()
    assert inside(fig) and "mean over seeds" in title.replace("\n", " ") and "pattern.m=4" in title
    # the forest's x range follows the rows that did not collapse: random (about -18 and -29) at the left edge
    lo, hi = fig.axes[0].get_xlim()
    assert -3 < lo < 0 < 0.7 < hi < 3
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith("collapsed") for t in legend)
