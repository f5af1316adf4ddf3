"""train.py end to end, as a user runs it: a subprocess on a slice of SST-2 with a tiny local preset.

Checks every output (metrics rows, PNG, config, reloadable preset, predictions), resume after SIGKILL, and the
one-line errors of bad command lines.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_preset import sst2_vocabulary, write_tiny_preset

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures train once, not once per worker.
pytestmark = pytest.mark.xdist_group("train_cli")

REPO = Path(__file__).resolve().parents[1]
CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]  # the test run's cache (conftest.py), never the user's
TRAIN_ROWS, DEV_ROWS = 2048, 200
STEPS_PER_EPOCH, EPOCHS, LOG_EVERY = 2048 // 16, 2, 4  # configs/tiny.py: batch 16, 2 epochs, log every 4 steps


def _train(*args, check=True, env=None, **popen):
    command = [sys.executable, str(REPO / "train.py"), "--config", str(REPO / "configs" / "tiny.py"), *map(str, args)]
    env = dict(os.environ, FLAXBERT_COMPILATION_CACHE=CACHE, **(env or {}))
    if popen:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def files(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("train_cli")
    lines = (shared_data / "sst2" / "dev.tsv").read_text().splitlines(keepends=True)
    (root / "dev.tsv").write_text("".join(lines[: DEV_ROWS + 1]))
    write_tiny_preset(root / "preset", sst2_vocabulary(shared_data / "sst2" / "train.tsv", TRAIN_ROWS))
    return {"root": root, "train": shared_data / "sst2" / "train.tsv", "dev": root / "dev.tsv",
            "preset": root / "preset"}  # fmt: skip


def _args(files, out, *extra):
    return ["--preset", files["preset"], "--train-file", files["train"], "--validation-file", files["dev"],
            f"--config.data.train_limit={TRAIN_ROWS}", "--output-dir", out, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(files):
    out = files["root"] / "run"
    result = _train(*_args(files, out, "--predict-file", files["dev"]))
    return out, result


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_outputs(finished_run, files):
    out, result = finished_run
    rows = _rows(out)
    validation = [r for r in rows if r["split"] == "validation"]
    train = [r for r in rows if r["split"] == "train"]
    # One row before training, one per epoch; a training row every LOG_EVERY steps (and at each epoch's end).
    assert [r["step"] for r in validation] == [0, STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]
    assert [r["step"] for r in train] == list(range(LOG_EVERY, EPOCHS * STEPS_PER_EPOCH + 1, LOG_EVERY))
    for r in rows:
        assert np.isfinite(r["loss"]) and 0.0 <= r["accuracy"] <= 1.0
    assert all(r["learning_rate"] == 2e-3 and r["examples_per_second"] > 0 for r in train)
    before, after = validation[0]["accuracy"], validation[-1]["accuracy"]
    assert before <= 0.55 and after > 0.6, (before, after)  # chance: 0.475 / 0.525 on this slice
    summary = json.loads((out / "summary.json").read_text())
    assert summary["after"]["validation"]["accuracy"] == after and summary["examples"]["train"] == TRAIN_ROWS
    assert re.search(r"validation\s+after\s+[\d.]+\s+" + f"{after:.4f}", result.stdout)
    png = (out / "curves.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == str(files["preset"]) and config["data"]["train_limit"] == TRAIN_ROWS
    assert config["batch_size"] == 16 and config["data"]["hub_repo"] == ""
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())[-1] == 2 * STEPS_PER_EPOCH


def test_saved_preset_reloads_and_predicts_the_same(finished_run, files):
    import jax

    import flaxbert
    from flaxbert import data

    out, _ = finished_run
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    dev = data.read_split(files["dev"], ("sentence",), "label")
    assert [p["text"] for p in predictions] == dev.texts
    reloaded = flaxbert.TextClassifier.from_preset(out / "model")
    probs = np.asarray(jax.nn.softmax(reloaded.predict(dev.texts, batch_size=64, verbose=0), axis=-1))
    np.testing.assert_allclose(probs, [p["probabilities"] for p in predictions], atol=1e-6)
    assert [p["label"] for p in predictions] == probs.argmax(-1).tolist()
    accuracy = reloaded.evaluate(dev.texts, dev.labels, batch_size=64, verbose=0)["accuracy"]
    assert accuracy == pytest.approx(_rows(out)[-1]["accuracy"], abs=1e-9)


def test_eval_only_scores_the_saved_model(finished_run, files):
    out, _ = finished_run
    result = _train("--preset", out / "model", "--validation-file", files["dev"], "--eval-only",
                    "--output-dir", files["root"] / "eval")  # fmt: skip
    scores = json.loads((files["root"] / "eval" / "summary.json").read_text())["after"]["validation"]
    assert scores["accuracy"] == pytest.approx(_rows(out)[-1]["accuracy"], abs=1e-9), result.stdout


def test_resume_after_kill_ends_the_same(finished_run, files):
    out = files["root"] / "killed"
    process = _train(*_args(files, out), popen=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        steps = [int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit()]
        if steps and max(steps) < EPOCHS * STEPS_PER_EPOCH:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = max(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())
    _train(*_args(files, out, "--resume"))

    def scores(rows):
        return [{k: v for k, v in r.items() if k not in ("examples_per_second", "epoch_seconds")} for r in rows]

    assert killed_at < EPOCHS * STEPS_PER_EPOCH
    assert scores(_rows(out)) == scores(_rows(finished_run[0]))
    final = json.loads((out / "summary.json").read_text())["after"]
    assert final == json.loads((finished_run[0] / "summary.json").read_text())["after"]
    # Resuming the finished run (to add predictions, say) keeps its model; it once failed on model/ existing.
    model = sorted(p.name for p in (out / "model").rglob("*"))
    _train(*_args(files, out, "--resume", "--predict-file", files["dev"]))
    assert sorted(p.name for p in (out / "model").rglob("*")) == model
    assert len((out / "predictions.jsonl").read_text().splitlines()) == DEV_ROWS
    assert json.loads((out / "summary.json").read_text())["after"] == final


def _error(*args, env=None):
    result = _train(*args, check=False, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error: "), result.stderr[-2000:]
    return lines[0]


def test_bad_command_lines_fail_with_one_line(files, shared_data, tmp_path):
    base = _args(files, tmp_path / "bad")
    assert "unknown flag '--bogus'" in _error(*base, "--bogus")
    # was "config key 'mesh.fsdp' takes a int, got '8,1'"
    assert "--mesh takes DATA,FSDP (two whole numbers, e.g. 1,8; DATA may be -1), got '1,8,1'" in _error(
        *base, "--mesh", "1,8,1"
    )
    assert "unknown config key 'optimizer.lr'; did you mean" in _error(*base, "--config.optimizer.lr=1e-3")
    missing = _error("--preset", files["preset"], "--train-file", tmp_path / "nope.tsv", "--validation-file",
                     files["dev"], "--output-dir", tmp_path / "bad")  # fmt: skip
    assert "nope.tsv' does not exist" in missing
    assert "column 'sentiment' not found" in _error(*base, "--label-column", "sentiment")
    sst5_dir = shared_data / "sst5"
    sst5 = _error("--preset", files["preset"], "--train-file", sst5_dir / "train.txt", "--validation-file",
                  sst5_dir / "dev.txt", "--text-column", "text", "--output-dir", tmp_path / "bad")  # fmt: skip
    assert "range over 0..4, but the model has num_classes=2" in sst5 and "--num-classes 5" in sst5
    bad_int = _error(*base, "--epochs", "abc")
    assert "argument --epochs: invalid int value: 'abc' (see python train.py --help)" in bad_int
    # (--seed -1 and a missing --predict-file: tests/test_run_job.py, in-process)
    assert not (tmp_path / "bad").exists()  # nothing was written by rejected runs


def test_offline_with_nothing_cached_gives_the_local_files_command(files, tmp_path):
    """HF_HUB_OFFLINE=1 alone, as a user sets it (no --offline: that flag is test_glue_from_the_hub_cache_as_parquet's;
    this path once crashed on `huggingface_hub.constants`, a submodule that `import huggingface_hub` does not load)."""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty_cache"), "HF_HUB_OFFLINE": "1"}
    message = _error("--config", REPO / "configs" / "sst2.py", "--preset", files["preset"],
                     "--output-dir", tmp_path / "offline", env=env)  # fmt: skip
    assert "nyu-mll/glue/sst2/train-00000-of-00001.parquet is not in the Hugging Face cache" in message
    # the flags to add, not a command of its own: that one dropped --config and every override
    want = "Train from local files instead: run the same command with --train-file PATH/train.tsv --validation-file"
    assert want in message and "--text-column sentence --label-column label added" in message


def test_glue_from_the_hub_cache_as_parquet(files, tmp_path):
    """The main command's data path: GLUE SST-2 parquet files resolved through huggingface_hub (here its offline
    cache, laid out as a download leaves it), read with pyarrow."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from flaxbert import data

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--nyu-mll--glue"
    snapshot = repo / "snapshots" / revision / "sst2"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for name, path, rows in (("train", files["train"], TRAIN_ROWS), ("validation", files["dev"], DEV_ROWS)):
        split = data.read_split(path, ("sentence",), "label", limit=rows)
        table = pa.table({"sentence": split.texts, "label": split.labels, "idx": list(range(len(split)))})
        pq.write_table(table, snapshot / f"{name}-00000-of-00001.parquet")
    out = tmp_path / "glue"
    _train("--config", REPO / "configs" / "sst2.py", "--preset", files["preset"], "--offline", "--epochs", "2",
           "--batch-size", "16", "--sequence-length", "64", "--learning-rate", "2e-3", "--config.bucket=false",
           "--output-dir", out, env={"HF_HUB_CACHE": str(tmp_path / "hub")})  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["examples"] == {"train": TRAIN_ROWS, "validation": DEV_ROWS}
    assert summary["after"]["validation"]["accuracy"] > 0.6
    assert json.loads((out / "config.json").read_text())["data"]["hub_repo"] == "nyu-mll/glue"
