"""benchmarks/throughput.py's rows: a worker's rows as it measures them, what a worker cut off by its time limit keeps,
and the report (table, ratios, chart) of partial and failed rows. No framework is measured: a fake backend stands in.
"""

import json
import subprocess
import sys
import tempfile
import types

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import peers  # noqa: E402
import plot  # noqa: E402
import throughput  # noqa: E402
import throughput_worker  # noqa: E402

SEQ = 128
SHAPE = peers.Shape.parse("bert_tiny:8:float32")
BACKEND = types.SimpleNamespace(device="cpu", device_name="cpu: test", peak_memory=lambda: 5 * 2**20)
VERSIONS = {"jax": "test"}


def _flaxbert_rows(capsys, cut_after: str | None) -> str:
    """The stdout of a flaxbert worker's shape, as _flaxbert prints it; `cut_after` names the last thing it did before
    its time limit cut it off (None: it finished)."""
    rows = throughput_worker._Rows("flaxbert", SHAPE, SEQ, BACKEND)
    steps = [
        lambda: rows.add(path="classifier.fit / classifier.predict", predict_batch=256),
        lambda: rows.add(first_step_s=12.5),
        lambda: rows.add(train_examples_per_s=400.0, fit_fixed_s=0.25),
        lambda: rows.finish(predict_examples_per_s=1000.0),
        lambda: rows.add("jitted step", path="the jitted step", first_step_s=None, predict_batch=256),
        lambda: rows.add("jitted step", train_examples_per_s=500.0),
        lambda: rows.finish("jitted step", predict_examples_per_s=1200.0),
    ]
    names = ["open", "first step", "train", "predict", "jitted open", "jitted train", "jitted predict"]
    for name, step in zip(names, steps, strict=True):
        step()
        if name == cut_after:
            break
    return capsys.readouterr().out


def _report(rows):
    return {"benchmark": "throughput", "device": {"kind": "cpu", "cpu": "test", "cpu_count": 2}, "versions": VERSIONS,
            "seq": SEQ, "steps": 3, "repeats": 1, "rounds": 1, "flops_formula": peers.FLOPS_FORMULA,
            "peak_flops": peers.PEAK_FLOPS, "rows": rows}  # fmt: skip


def test_a_finished_worker_gives_one_row_per_framework_with_train_and_predict_tokens(capsys):
    rows = throughput.worker_rows(_flaxbert_rows(capsys, None), "exit status 0", "")
    assert [(r["framework"], r["batch"]) for r in rows] == [("flaxbert", 8), ("flaxbert, jitted step", 8)]
    public, jitted = rows
    assert "error" not in public and "error" not in jitted
    assert public["train_tokens_per_s"] == 400.0 * SEQ and public["predict_tokens_per_s"] == 1000.0 * SEQ
    assert jitted["predict_tokens_per_s"] == 1200.0 * SEQ
    assert public["first_step_s"] == 12.5 and public["peak_memory_bytes"] == 5 * 2**20
    assert public["train_tflops"] == pytest.approx(peers.train_flops_per_example("bert_tiny", SEQ) * 400.0 / 1e12)


def test_a_worker_cut_off_by_its_time_limit_keeps_what_it_measured(capsys):
    status = "timed out after 110s"
    rows = throughput.worker_rows(_flaxbert_rows(capsys, "train"), status, "last stderr line")
    assert len(rows) == 1
    (row,) = rows
    measured = "first_step_s, train_examples_per_s, fit_fixed_s"
    assert row["error"] == f"{status}, after measuring {measured}: last stderr line"
    assert (row["first_step_s"], row["train_examples_per_s"], row["train_tokens_per_s"]) == (12.5, 400.0, 400.0 * SEQ)
    assert "predict_examples_per_s" not in row

    (first,) = throughput.worker_rows(_flaxbert_rows(capsys, "first step"), status, "")
    assert first["error"] == f"{status}, after measuring first_step_s" and first["first_step_s"] == 12.5

    # Cut off in the jitted section: the public row is whole, the jitted one keeps its train rate.
    public, jitted = throughput.worker_rows(_flaxbert_rows(capsys, "jitted train"), status, "")
    assert "error" not in public and public["predict_examples_per_s"] == 1000.0
    assert jitted["error"] == f"{status}, after measuring train_examples_per_s" and jitted["first_step_s"] is None


def test_a_failing_step_keeps_the_fields_measured_before_it(capsys):
    rows = throughput_worker._Rows("keras_hub", SHAPE, SEQ, BACKEND)
    rows.add(path="keras.Model.fit / keras.Model.predict", predict_batch=256)
    rows.add(train_examples_per_s=300.0)
    rows.fail("RuntimeError: out of memory")
    (row,) = throughput.worker_rows(capsys.readouterr().out, "exit status 0", "")
    assert row["error"] == "RuntimeError: out of memory" and row["train_examples_per_s"] == 300.0

    throughput_worker._Rows("keras_hub", SHAPE, SEQ, BACKEND).fail("ValueError: before any row")
    (row,) = throughput.worker_rows(capsys.readouterr().out, "exit status 0", "")
    assert (row["framework"], row["batch"], row["error"]) == ("keras_hub", 8, "ValueError: before any row")


def test_the_report_shows_a_partial_row_and_its_ratios(capsys, tmp_path):
    flaxbert = throughput.worker_rows(_flaxbert_rows(capsys, "train"), "timed out after 110s", "")
    keras = throughput_worker._Rows("keras_hub", SHAPE, SEQ, BACKEND)
    keras.add(path="keras", predict_batch=256, first_step_s=3.0, train_examples_per_s=200.0, fit_fixed_s=0.1)
    keras.finish(predict_examples_per_s=800.0)
    failed = throughput._failed("transformers", "bert_tiny", 8, "float32", "timed out after 110s")
    rows = [dict(r, round=0) for r in [*flaxbert, *throughput.worker_rows(capsys.readouterr().out, "", ""), failed]]
    report = _report(rows)

    merged = {r["framework"]: r for r in throughput.best_of_rounds(rows)}
    assert merged["flaxbert"]["train_examples_per_s"] == 400.0 and "error" in merged["flaxbert"]
    assert merged["keras_hub"]["predict_tokens_per_s"] == 800.0 * SEQ

    throughput.print_report(report)
    lines = capsys.readouterr().out.splitlines()
    (partial,) = [line for line in lines if line.startswith("| flaxbert |")]
    assert partial.startswith("| flaxbert | bert_tiny | 8 | float32 | 400 | 51,200 |  |  | 12.5 |")
    assert partial.endswith("| timed out after 110s, after measuring first_step_s, train_examples_per_s, fit_fixed_s |")
    (whole,) = [line for line in lines if line.startswith("| keras_hub |")]
    assert "| 800 (256) | 102,400 |" in whole and whole.endswith("|  |")
    assert "| bert_tiny | 8 | float32 | 2.00x | n/a |" in lines  # train vs keras-hub; predict was not measured

    json_path = tmp_path / "partial.json"
    assert plot.write_png(report, json_path) == json_path.with_suffix(".png")
    assert json_path.with_suffix(".png").stat().st_size > 0


def test_a_report_where_every_row_failed_draws_no_chart(tmp_path):
    rows = [dict(throughput._failed("flaxbert", "bert_tiny", 8, "float32", "timed out after 35s"), round=0)]
    json_path = tmp_path / "all_failed.json"
    json_path.write_text(json.dumps(_report(rows)))
    assert plot.write_png(_report(rows), json_path) == plot.NO_RESULT
    assert not json_path.with_suffix(".png").exists()


def test_a_plain_run_writes_its_report_outside_the_committed_results():
    help_text = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "throughput.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert " ".join(help_text.split()).count(f"(default {tempfile.gettempdir()}/throughput.json:") == 1


class _FakeFit:
    """A fit whose n-step call takes `fixed + n * step` seconds of a fake clock, plus `first_extra` on its first call
    (a program the second fit of a classifier compiles, as flaxbert's continued optimizer state does) and `jitter`
    on calls of `jitter_n` steps."""

    def __init__(self, monkeypatch, step, fixed=0.01, first_extra=0.0, jitter=0.0, jitter_n=None):
        self.now, self.calls = 0.0, 0
        self.step, self.fixed, self.first_extra, self.jitter, self.jitter_n = step, fixed, first_extra, jitter, jitter_n
        monkeypatch.setattr(throughput_worker.time, "perf_counter", lambda: self.now)

    def __call__(self, n):
        self.now += self.fixed + n * self.step + (self.first_extra if self.calls == 0 else 0.0)
        self.now += self.jitter if n == self.jitter_n else 0.0
        self.calls += 1


def test_the_marginal_gpu_step_leaves_out_what_the_first_fit_after_the_warm_up_compiles(monkeypatch):
    # Session 22's H200 run: flaxbert's first fit(20) after the 1-step warm-up paid up to 0.3-0.8 s once, and the
    # marginal step (fit(40) - fit(20)) / 20 came out negative (bert_base batch 32: -2,108 examples/s).
    fit = _FakeFit(monkeypatch, step=0.010, first_extra=1.0)
    step, fixed, estimate = throughput_worker._fit_step_s(fit, lambda _: None, steps=20, repeats=1, marginal=True)
    assert (step, fixed, estimate) == (pytest.approx(0.010), pytest.approx(0.01), "marginal")


def test_a_marginal_step_that_comes_out_negative_falls_back_to_the_whole_fit(monkeypatch):
    fit = _FakeFit(monkeypatch, step=0.010, jitter=0.5, jitter_n=20)  # a load burst on the shorter fit
    step, _, estimate = throughput_worker._fit_step_s(fit, lambda _: None, steps=20, repeats=1, marginal=True)
    assert estimate == "whole fit" and step == pytest.approx((0.01 + 40 * 0.010) / 40)


def test_the_cpu_step_is_the_whole_fit_of_twice_the_steps(monkeypatch):
    fit = _FakeFit(monkeypatch, step=0.2, fixed=0.4, first_extra=3.0)
    step, fixed, estimate = throughput_worker._fit_step_s(fit, lambda _: None, steps=5, repeats=2, marginal=False)
    assert (step, fixed, estimate) == (pytest.approx((0.4 + 10 * 0.2) / 10), pytest.approx(0.4), "whole fit")


def test_the_report_names_gpu_rows_whose_train_rate_fell_back_to_the_whole_fit(capsys):
    row = {"framework": "flaxbert", "model": "bert_base", "batch": 32, "precision": "bfloat16", "seq": SEQ,
           "train_examples_per_s": 2800.0, "train_estimate": "whole fit", "predict_examples_per_s": 1.0e4,
           "predict_batch": 256}  # fmt: skip
    report = dict(_report([row]), device={"kind": "gpu", "accelerators": ["NVIDIA H200"]})
    throughput.print_report(dict(report, device={"kind": "cpu", "cpu": "test", "cpu_count": 2}))
    assert "not the marginal step" not in capsys.readouterr().out  # on CPU the whole fit is the plan
    throughput.print_report(report)
    out = capsys.readouterr().out
    named = "recomputed so), so no faster than the true rate: flaxbert bert_base 32."
    assert "not the marginal step" in out and named in out


def test_a_report_of_another_benchmark_is_named_not_a_key_error(tmp_path):
    """plot.py on a tokenize_sst2 or rerun_cell report ended in a KeyError."""
    json_path = tmp_path / "tokenize_sst2.json"
    for report in ({"peers": {}}, {"benchmark": "rerun_cell"}, [1, 2]):
        assert plot.write_png(report, json_path) == plot.NOT_DRAWN
    assert not json_path.with_suffix(".png").exists()


@pytest.mark.parametrize("model", ["bert_tiny", "bert_base", "distil_bert_base"])
def test_the_flops_formula_counts_the_models_own_non_embedding_params(model):
    """The issue's formula, 6 * N * L + 12 * layers * L^2 * hidden per training example, with N counted from the
    classifier flaxbert builds (its params' shapes, nothing computed): every param but the embedding tables and their
    LayerNorm."""
    import jax

    from flaxbert import models
    from flaxbert.models.abstract import abstract_params

    arch, layers, heads, hidden, inter = peers.MODELS[model]
    dims = dict(vocabulary_size=peers.VOCAB, num_layers=layers, num_heads=heads, hidden_dim=hidden,
                intermediate_dim=inter, max_sequence_length=peers.MAX_POSITIONS)  # fmt: skip
    if arch == "bert":
        module = models.BertClassifier(models.BertConfig(**dims), models.BertHeadConfig(peers.NUM_CLASSES))
    else:
        module = models.DistilBertClassifier(
            models.DistilBertConfig(**dims), models.DistilBertHeadConfig(peers.NUM_CLASSES)
        )
    leaves = jax.tree_util.tree_leaves_with_path(abstract_params(module, module.backbone))
    sizes = {jax.tree_util.keystr(path): leaf.size for path, leaf in leaves}
    embeddings = [path for path in sizes if "embedding" in path]  # the tables and the LayerNorm after them
    assert len(embeddings) == (5 if arch == "bert" else 4)
    n = sum(sizes.values()) - sum(sizes[path] for path in embeddings)
    assert peers.non_embedding_params(model) == n
    assert peers.train_flops_per_example(model, SEQ) == 6 * n * SEQ + 12 * layers * SEQ**2 * hidden


def test_rounds_merge_into_each_rates_best_round(capsys):
    """Train from the fastest train round (with that round's other columns), predict from the fastest predict round,
    the first step from the quickest; every round's rates kept."""
    rows = []
    for round_, (train, predict, first) in enumerate([(300.0, 900.0, 14.0), (400.0, 700.0, 12.5), (350.0, 800.0, 13)]):
        worker = throughput_worker._Rows("flaxbert", SHAPE, SEQ, BACKEND)
        worker.add(path="fit", predict_batch=256, first_step_s=first, train_examples_per_s=train, fit_fixed_s=round_)
        worker.finish(predict_examples_per_s=predict)
        rows += [dict(r, round=round_) for r in throughput.worker_rows(capsys.readouterr().out, "", "")]
    (best,) = throughput.best_of_rounds(rows)
    assert (best["train_examples_per_s"], best["fit_fixed_s"], best["predict_examples_per_s"]) == (400.0, 1, 900.0)
    assert best["predict_tokens_per_s"] == 900.0 * SEQ and best["first_step_s"] == 12.5 and "round" not in best
    assert best["train_examples_per_s_rounds"] == [300.0, 400.0, 350.0]
    assert best["predict_examples_per_s_rounds"] == [900.0, 700.0, 800.0]


def test_the_flaxbert_workers_rates_are_the_rows_it_ran_over_the_seconds_they_took(monkeypatch, capsys):
    """The real flaxbert worker on bert_tiny (sequence length 8, train batch 8, predict batch 16), with the timings
    fixed: each rate is the rows that call ran (fit's batch, predict's rows, the jitted loops' steps x batch) over
    its seconds."""
    shape, seq, steps, predict_batch = peers.Shape.parse("bert_tiny:8:float32"), 8, 2, 16
    monkeypatch.setattr(throughput_worker, "_fit_step_s", lambda *args, **kwargs: (0.5, 0.1, "whole fit"))

    def best(fn, sync, repeats):
        sync(fn())  # runs what would be timed, once
        return 4.0

    monkeypatch.setattr(throughput_worker, "_best", best)
    backend = throughput_worker._Backend("flaxbert", "cpu", None)
    rows = throughput_worker._Rows("flaxbert", shape, seq, backend)
    throughput_worker._flaxbert(shape, seq, steps, 1, backend, predict_batch, rows)
    public, jitted = throughput.worker_rows(capsys.readouterr().out, "exit status 0", "")
    assert "error" not in public and "error" not in jitted
    assert (public["train_examples_per_s"], public["fit_fixed_s"], public["train_estimate"]) == (16.0, 0.1, "whole fit")
    assert public["predict_examples_per_s"] == steps * predict_batch / 4.0  # the rows predicted: 32 in 4 s
    assert jitted["train_examples_per_s"] == steps * shape.batch / 4.0
    assert jitted["predict_examples_per_s"] == steps * predict_batch / 4.0
    assert public["first_step_s"] > 0 and public["peak_memory_bytes"] > 2**20
