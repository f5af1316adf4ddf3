"""train.py's curves.png: each panel plots the metric its axis names, for each split, by epoch."""

import matplotlib.pyplot as plt

from flaxbert.run import curves


def test_each_panel_plots_its_own_metric_per_split_by_epoch(tmp_path, monkeypatch):
    rows = [
        {"split": "validation", "epoch": 0, "loss": 0.9, "accuracy": 0.5},
        {"split": "train", "epoch": 1, "loss": 0.7, "accuracy": 0.6},
        {"split": "validation", "epoch": 1, "loss": 0.65, "accuracy": 0.62},
        {"split": "train", "epoch": 2, "loss": 0.4, "accuracy": 0.8},
        {"split": "validation", "epoch": 2, "loss": 0.5, "accuracy": 0.75},
        {"split": "test", "epoch": 2, "loss": 0.55, "accuracy": 0.7},
    ]
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keeps the figure curves.plot drew
    assert curves.plot(rows, tmp_path / "curves.png", "a run")
    assert (tmp_path / "curves.png").stat().st_size > 0
    (figure,) = figures
    for axis in figure.axes:
        metric = axis.get_ylabel()
        lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}
        for split in ("train", "validation", "test"):
            chosen = [row for row in rows if row["split"] == split]
            assert lines[split] == ([row["epoch"] for row in chosen], [row[metric] for row in chosen])
    assert [axis.get_ylabel() for axis in figure.axes] == ["loss", "accuracy"]
    monkeypatch.undo()
    plt.close(figure)
