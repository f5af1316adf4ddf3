"""The PNG of a run's loss and accuracy curves, training rows against validation rows, by epoch."""

from __future__ import annotations

from pathlib import Path


def plot(rows: list[dict], path, title: str) -> bool:
    """Writes the curves to `path`; returns False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for split, style in (("train", "-"), ("validation", "o-"), ("test", "s")):
        chosen = [row for row in rows if row["split"] == split]
        if not chosen:
            continue
        epochs = [row["epoch"] for row in chosen]
        for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
            axis.plot(epochs, [row[metric] for row in chosen], style, label=split)
    for axis, metric in zip(axes, ("loss", "accuracy"), strict=True):
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(Path(path), dpi=100)
    plt.close(figure)
    return True
