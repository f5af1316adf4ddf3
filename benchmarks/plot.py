"""Bar charts of a benchmark report: the PNG beside its JSON, with the targets drawn in.

    python benchmarks/plot.py benchmarks/results/throughput_cpu_session9.json   # -> throughput_cpu_session9.png

`throughput.py` and `sst2_epoch.py` call `write_and_say` after writing their JSON. A throughput chart has one column per
shape (model, batch, precision) and two rows, train and predict examples/s, one bar per framework (each its best
round), flaxbert's bars in blue, the peers' in grey; the dashed line is the target: on GPU the absolute rate the
performance issue asks for, elsewhere 1.3x the faster of keras-hub and transformers. An SST-2 chart has one bar per
peer, the epoch's wall seconds, with its dev accuracy and its speed against keras-hub; the dashed line is the 4x
target (keras-hub's time / 4). A row cut off by a time limit draws the rates it measured; a report with no rate to
draw gets no chart, and a line saying so.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from throughput import best_of_rounds

PEERS = ("keras_hub", "transformers")  # what flaxbert is compared with
CPU_TARGET_RATIO = 1.3  # CPU: train and predict >= 1.3x the faster peer
SST2_TARGET_RATIO = 4.0  # SST-2 epoch from raw strings: >= 4x faster than keras-hub at its fixed length
GPU_TARGETS = {  # examples/s, (model, batch, precision, "train" | "predict")
    ("bert_base", 256, "bfloat16", "train"): 6000,
    ("bert_base", 32, "bfloat16", "train"): 4000,
    ("bert_base", 256, "bfloat16", "predict"): 20000,
    ("distil_bert_base", 32, "bfloat16", "train"): 7000,
}
FLAXBERT, PEER = "tab:blue", "tab:gray"
NO_MATPLOTLIB = "no chart: matplotlib is not installed"  # what write_png returns instead of a path
NO_RESULT = "no chart: no row of the report has a result to draw"
NOT_DRAWN = "no chart: only throughput.py and sst2_epoch.py reports are drawn (the others' tables: benchmarks/*.md)"


def write_and_say(report: dict, json_path) -> None:
    """`write_png`, then one line saying what it wrote or why it drew nothing (the benchmarks call this after writing
    their JSON)."""
    png = write_png(report, json_path)
    print(f"wrote {png}" if isinstance(png, pathlib.Path) else png)


def write_png(report: dict, json_path) -> pathlib.Path | str:
    """Writes the chart of `report` beside `json_path` (same name, .png) and returns its path; or returns
    NO_MATPLOTLIB, NO_RESULT (every row failed) or NOT_DRAWN (another benchmark's report) and writes nothing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return NO_MATPLOTLIB
    draw = DRAWN.get(report.get("benchmark") if isinstance(report, dict) else None)
    if draw is None:
        return NOT_DRAWN
    figure = draw(plt, report)
    if figure is None:
        return NO_RESULT
    path = pathlib.Path(json_path).with_suffix(".png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _throughput(plt, report):
    """The chart, or None when no row has a rate (a row cut off by a time limit draws the rates it measured)."""
    rate = ("train_examples_per_s", "predict_examples_per_s")
    rows = [r for r in best_of_rounds(report["rows"]) if any(r.get(key) is not None for key in rate)]
    if not rows:
        return None
    shapes = list(dict.fromkeys((r["model"], r["batch"], r["precision"]) for r in rows))
    frameworks = list(dict.fromkeys(r["framework"] for r in rows))
    gpu = report["device"]["kind"] == "gpu"
    figure, axes = plt.subplots(2, len(shapes), figsize=(1.2 + 0.9 * len(frameworks) * len(shapes), 7), squeeze=False)
    for column, shape in enumerate(shapes):
        mine = {r["framework"]: r for r in rows if (r["model"], r["batch"], r["precision"]) == shape}
        for line, what in enumerate(("train", "predict")):
            axis, key = axes[line][column], f"{what}_examples_per_s"
            names = [f for f in frameworks if mine.get(f, {}).get(key) is not None]
            values = [mine[f][key] for f in names]
            bars = axis.bar(range(len(names)), values, color=[PEER if f in PEERS else FLAXBERT for f in names])
            axis.bar_label(bars, [f"{v:,.0f}" for v in values], fontsize=8)
            axis.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
            peers = [mine[f][key] for f in PEERS if f in names]
            target = GPU_TARGETS.get((*shape, what)) if gpu else (CPU_TARGET_RATIO * max(peers) if peers else None)
            batch = next(iter(mine.values()))["predict_batch"] if what == "predict" else shape[1]
            title = f"{shape[0]}, batch {batch}"
            if "flaxbert" in names and peers:
                title += f"\nflaxbert / faster peer: {mine['flaxbert'][key] / max(peers):.2f}x"
            if target:
                rule = "" if gpu else f": {CPU_TARGET_RATIO:g}x the faster peer"
                axis.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target{rule}, {target:,.0f}")
                axis.legend(loc="upper left", fontsize=7)
            axis.set_title(title, fontsize=9)
            axis.set_ylabel(f"{what} examples/s ({shape[2]})", fontsize=9)
            axis.margins(y=0.3)
    device = ", ".join(report["device"].get("accelerators", [])) or report["device"].get("cpu", "")
    figure.suptitle(f"seq {report['seq']} on {device}", fontsize=10)
    figure.tight_layout()
    return figure


def _sst2_epoch(plt, report):
    """The chart, or None when every peer failed."""
    peers = {name: r for name, r in report["peers"].items() if "error" not in r}
    if not peers:
        return None
    names = list(peers)
    seconds = [peers[name]["train_s"] for name in names]
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    bars = axis.barh(range(len(names)), seconds, color=[PEER if name in PEERS else FLAXBERT for name in names])
    reference = peers.get("keras_hub", {}).get("train_s")
    labels = []
    for name, s in zip(names, seconds, strict=True):
        speed = f", {reference / s:.2f}x keras-hub" if reference and name != "keras_hub" else ""
        labels.append(f"{s:.1f} s, dev {100 * peers[name]['dev_accuracy']:.2f}%{speed}")
    axis.bar_label(bars, labels, fontsize=8, padding=3)
    if reference:
        axis.axvline(reference / SST2_TARGET_RATIO, color="tab:red", linestyle="--", linewidth=1,
                     label=f"target: {SST2_TARGET_RATIO:g}x faster than keras-hub")  # fmt: skip
        axis.legend(loc="upper right", fontsize=8)
    axis.set_yticks(range(len(names)), names, fontsize=9)
    axis.invert_yaxis()
    axis.set_xlabel("train wall seconds (tokenize + compile + train)", fontsize=9)
    axis.margins(x=0.45)
    sentences = f"{report['train_sentences']:,} SST-2 sentences"
    figure.suptitle(f"{sentences}, batch {report['batch_size']}, {report['precision']}, on {report['cpu']} "
                    f"({report['device']})", fontsize=10)  # fmt: skip
    figure.tight_layout()
    return figure


DRAWN = {"throughput": _throughput, "sst2_epoch": _sst2_epoch}  # the "benchmark" field of the reports drawn


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=pathlib.Path, help="throughput or sst2_epoch JSON files")
    for path in parser.parse_args().reports:
        written = write_png(json.loads(path.read_text()), path)
        if written == NO_MATPLOTLIB:
            raise SystemExit(f"{NO_MATPLOTLIB}: pip install matplotlib")
        print(f"wrote {written}" if isinstance(written, pathlib.Path) else f"{path}: {written}")


if __name__ == "__main__":
    main()
