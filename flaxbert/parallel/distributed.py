"""Multi-process set-up: `jax.distributed.initialize` from the environment, with errors that name the variable."""

from __future__ import annotations

import os

import jax

# The explicit set-up: all three name the job; FLAXBERT_DISTRIBUTED lets jax detect what is not given.
EXPLICIT = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def initialize_distributed() -> bool:
    """Calls `jax.distributed.initialize` when a multi-process job is configured in the environment.

    `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID` name the job
    explicitly, all three. `FLAXBERT_DISTRIBUTED=1` (or true / yes / on) lets jax detect the job on TPU pods and
    SLURM / Open MPI clusters, with any of the three that are set taking precedence. Must run before any other jax
    call. Returns whether it initialised.

    Raises:
        ValueError: some of the three variables are set but not all (and FLAXBERT_DISTRIBUTED is not on), one is not
            a valid value, or FLAXBERT_DISTRIBUTED is neither on nor off.
    """
    given = {name: os.environ[name].strip() for name in EXPLICIT if os.environ.get(name, "").strip()}
    auto = _flag("FLAXBERT_DISTRIBUTED")
    if not given and not auto:
        return False
    missing = [name for name in EXPLICIT if name not in given]
    if missing and not auto:
        raise ValueError(
            f"{' and '.join(given)} set without {' and '.join(missing)}: a multi-process job needs all of "
            f"{', '.join(EXPLICIT)} on every process (the same address and count; ids 0 to count - 1), or "
            "FLAXBERT_DISTRIBUTED=1 for jax to detect the job (TPU pods, SLURM, Open MPI). Unset them to run "
            "one process."
        )
    jax.distributed.initialize(**_arguments(given))
    return True


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"{name}={os.environ[name]!r} is not understood: set it to 1 (or true, yes, on) to start a multi-process "
            "job, or 0 (or false, no, off; or unset it) for one process."
        )
    return value in _TRUE


def _arguments(given: dict[str, str]) -> dict:
    """`jax.distributed.initialize`'s arguments from the variables set; None leaves one to jax's detection."""
    count = _whole_number(given, "JAX_NUM_PROCESSES", "the job's number of processes", minimum=1)
    index = _whole_number(given, "JAX_PROCESS_ID", "this process's index, from 0", minimum=0)
    if count is not None and index is not None and index >= count:
        raise ValueError(
            f"JAX_PROCESS_ID={index} is not below JAX_NUM_PROCESSES={count}: process ids run from 0 to {count - 1}."
        )
    return {"coordinator_address": given.get("JAX_COORDINATOR_ADDRESS"), "num_processes": count, "process_id": index}


def _whole_number(given: dict[str, str], name: str, meaning: str, minimum: int) -> int | None:
    if name not in given:
        return None
    try:
        value = int(given[name])
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f"{name}={given[name]!r} must be {meaning}: a whole number of at least {minimum}.")
    return value
