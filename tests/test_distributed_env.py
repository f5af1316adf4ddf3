"""initialize_distributed reads a multi-process job from the environment, or says which variable is wrong and how to
fix it. jax.distributed.initialize is replaced by a recorder: a real one would wait for the other processes."""

import os
import pathlib
import subprocess
import sys

import jax
import pytest

from flaxbert.parallel import initialize_distributed

VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "FLAXBERT_DISTRIBUTED")


@pytest.fixture
def calls(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    recorded = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: recorded.append(kwargs))
    return recorded


def _run(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return initialize_distributed()


def test_nothing_set_is_one_process(calls, monkeypatch):
    assert _run(monkeypatch, FLAXBERT_DISTRIBUTED="0") is False
    assert _run(monkeypatch, FLAXBERT_DISTRIBUTED="") is False
    assert calls == []


def test_all_three_variables_name_the_job(calls, monkeypatch):
    assert _run(monkeypatch, JAX_COORDINATOR_ADDRESS="10.0.0.1:1234", JAX_NUM_PROCESSES="4", JAX_PROCESS_ID=" 3 ")
    assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 4, "process_id": 3}]


@pytest.mark.parametrize("value", ["1", "true", "True", "yes", "ON"])
def test_flaxbert_distributed_takes_the_usual_spellings_of_true(calls, monkeypatch, value):
    """FLAXBERT_DISTRIBUTED=true ran one process silently (only "1" counted)."""
    assert _run(monkeypatch, FLAXBERT_DISTRIBUTED=value) is True
    assert calls == [{"coordinator_address": None, "num_processes": None, "process_id": None}]


def test_auto_detection_keeps_what_is_set(calls, monkeypatch):
    assert _run(monkeypatch, FLAXBERT_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS="head:1234")
    assert calls == [{"coordinator_address": "head:1234", "num_processes": None, "process_id": None}]


@pytest.mark.parametrize(
    ("env", "match"),
    [
        # a bare KeyError: 'JAX_NUM_PROCESSES'
        (dict(JAX_COORDINATOR_ADDRESS="h:1"), "JAX_COORDINATOR_ADDRESS set without JAX_NUM_PROCESSES and JAX_PR"),
        # returned False: one process, silently
        (dict(JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="1"), "JAX_NUM_PROCESSES and JAX_PROCESS_ID set without JAX_COO"),
        # ValueError: invalid literal for int() with base 10: 'two'
        (
            dict(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES="two", JAX_PROCESS_ID="0"),
            "JAX_NUM_PROCESSES='two' must be the job's number of processes: a whole number of at least 1",
        ),  # fmt: skip
        (
            dict(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="2"),
            "JAX_PROCESS_ID=2 is not below JAX_NUM_PROCESSES=2: process ids run from 0 to 1",
        ),  # fmt: skip
        (dict(JAX_COORDINATOR_ADDRESS="h:1", JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="-1"), "JAX_PROCESS_ID='-1' must"),
        (dict(FLAXBERT_DISTRIBUTED="maybe"), "FLAXBERT_DISTRIBUTED='maybe' is not understood: set it to 1"),
    ],
)
def test_a_partial_or_bad_environment_names_the_variable(calls, monkeypatch, env, match):
    with pytest.raises(ValueError, match=match):
        _run(monkeypatch, **env)
    assert calls == []


def test_train_py_says_it_in_one_line():
    repo = pathlib.Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES} | {"JAX_COORDINATOR_ADDRESS": "h:1"}
    result = subprocess.run([sys.executable, str(repo / "train.py")], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("train.py: error: JAX_COORDINATOR_ADDRESS set without JAX_NUM_PROCESSES")
    assert len(result.stderr.strip().splitlines()) == 1
