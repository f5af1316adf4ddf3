"""benchmarks/predict_latency.py's requests, timed pass and table. No framework is measured: a fake peer stands in."""

import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import predict_latency  # noqa: E402


def test_requests_are_consecutive_sentences_cycling_through_them():
    sentences = ["a", "b", "c", "d", "e"]
    assert predict_latency.requests_of(sentences, 2, 4) == [["a", "b"], ["c", "d"], ["e", "a"], ["b", "c"]]
    assert predict_latency.requests_of(sentences, 1, 2) == [["a"], ["b"]]


def test_every_request_is_answered_once_before_the_timed_pass():
    answered = []
    seconds = predict_latency.timed_pass(answered.append, [["a"], ["b"], ["c"]])
    assert answered == [["a"], ["b"], ["c"]] * 2
    assert seconds.shape == (3,) and (seconds >= 0).all()


def test_the_table_has_a_row_per_peer_and_a_failed_peer_says_why(capsys):
    cell = {50: 9.54, 90: 13.8, 99: 26.44}
    peers = {"flaxbert": {"1": cell, "8": cell}, "keras_hub": {"error": "ImportError: no keras"}}
    report = {"requests": 100, "preset": "p", "device": "cpu", "cpu_count": 2, "sizes": [1, 8], "peers": peers}
    predict_latency.print_report(report)
    out = capsys.readouterr().out
    assert "| peer | 1 sentence | 8 sentences |" in out
    assert "| flaxbert | 9.5 / 13.8 / 26.4 | 9.5 / 13.8 / 26.4 |" in out
    assert "| keras_hub | error: ImportError: no keras | |" in out
    assert "keras-hub's row is its model alone" in out


def test_percentiles_are_of_the_request_times_in_milliseconds():
    seconds = np.random.default_rng(0).permutation(np.arange(1, 101)) / 1000  # 1 ms .. 100 ms, shuffled
    assert predict_latency.percentiles_ms(seconds) == pytest.approx({50: 50.5, 90: 90.1, 99: 99.01})
