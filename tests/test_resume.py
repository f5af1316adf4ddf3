"""Killed and preempted training jobs: a SIGKILL'd run resumes to the same params; SIGTERM saves and exits 0."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

JOB = pathlib.Path(__file__).with_name("fit_job.py")
FINAL_STEP = 120  # 320 examples / batch 8 x 3 epochs


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(JOB.parents[1]))
    env.pop("XLA_FLAGS", None)  # one CPU device: the fastest here, and the same for every run
    # The runs inherit $JAX_COMPILATION_CACHE_DIR (conftest.py): they share their compiled steps.
    return env


def _start(checkpoint_dir, output):
    return subprocess.Popen([sys.executable, str(JOB), str(checkpoint_dir), str(output)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def _steps(checkpoint_dir) -> list[int]:
    return sorted(int(p.name) for p in pathlib.Path(checkpoint_dir).glob("*") if p.name.isdigit())


def _wait_for_checkpoint(proc, checkpoint_dir, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if _steps(checkpoint_dir):
            return
        if proc.poll() is not None:
            pytest.fail(f"the job ended before its first checkpoint: {proc.stdout.read().decode()[-2000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def _run(checkpoint_dir, output):
    proc = _start(checkpoint_dir, output)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    return dict(np.load(output))


def test_sigkill_then_resume_ends_with_the_same_params(tmp_path):
    reference = _run(tmp_path / "uninterrupted", tmp_path / "reference.npz")
    proc = _start(tmp_path / "ckpt", tmp_path / "killed.npz")
    _wait_for_checkpoint(proc, tmp_path / "ckpt")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    saved = _steps(tmp_path / "ckpt")
    assert saved and saved[-1] < FINAL_STEP and not (tmp_path / "killed.npz").exists()
    resumed = _run(tmp_path / "ckpt", tmp_path / "resumed.npz")
    assert resumed.keys() == reference.keys()
    worst = max(float(np.max(np.abs(resumed[k] - reference[k]))) for k in reference)
    assert worst <= 1e-6
    assert _steps(tmp_path / "ckpt")[-1] == FINAL_STEP


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    proc = _start(tmp_path / "ckpt", tmp_path / "out.npz")
    _wait_for_checkpoint(proc, tmp_path / "ckpt")
    seen = _steps(tmp_path / "ckpt")[-1]
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out.decode()[-3000:]
    saved = _steps(tmp_path / "ckpt")
    # it stopped early, and its last checkpoint is at least as late as the step when the signal arrived
    assert seen <= saved[-1] < FINAL_STEP and not (tmp_path / "out.npz").exists()


def _tiny_classifier():
    import flaxbert

    backbone = flaxbert.BertBackbone(200, 1, 2, 16, 32, max_sequence_length=8, seed=1)
    return flaxbert.BertTextClassifier(backbone, num_classes=2, seed=2)


def test_sigterm_at_an_epochs_last_step_still_ends_that_epoch(tmp_path):
    """Preempted during an epoch's last step, the run ends the epoch (validation included) before it exits, so the
    resumed run is the uninterrupted one, validation rows and all (it used to resume past the validation)."""
    rng = np.random.default_rng(0)
    x = {"token_ids": rng.integers(1, 200, (48, 8)), "segment_ids": np.zeros((48, 8), int),
         "padding_mask": np.ones((48, 8), int)}  # fmt: skip
    y, per_epoch = rng.integers(0, 2, 48), 48 // 8
    val = ({k: v[:16] for k, v in x.items()}, y[:16])

    def fit(classifier, rows, stop_at=None):
        def on_log(row):
            rows.append(row)
            if row["split"] == "train" and row["step"] == stop_at:
                os.kill(os.getpid(), signal.SIGTERM)

        return classifier.fit(x, y, batch_size=8, epochs=2, seed=3, verbose=0, validation_data=val,
                              checkpoint_dir=tmp_path / "ckpt", on_log=on_log, log_every=1)  # fmt: skip

    reference_rows, resumed_rows = [], []
    resumed = _tiny_classifier()
    with pytest.raises(SystemExit) as stopped:
        fit(resumed, resumed_rows, stop_at=per_epoch)
    assert stopped.value.code == 0
    assert resumed_rows[-1]["split"] == "validation" and resumed_rows[-1]["step"] == per_epoch  # epoch 1 ended
    history = fit(resumed, resumed_rows)  # resumes at epoch 2's first step, from the checkpoint's params
    assert history.epoch == [1]
    (tmp_path / "ckpt").rename(tmp_path / "resumed_ckpt")
    reference = _tiny_classifier()
    fit(reference, reference_rows)
    assert [(r["split"], r["step"]) for r in resumed_rows] == [(r["split"], r["step"]) for r in reference_rows]
    for a, b in zip(resumed_rows, reference_rows, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    leaves = zip(jax.tree.leaves(resumed.params), jax.tree.leaves(reference.params), strict=True)
    assert max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in leaves) <= 1e-6
