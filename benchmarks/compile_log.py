"""What jax did to build each program in this process, read from its own log (`jax_log_compiles`).

jax logs, per jitted program, the seconds it spent tracing the Python function to a jaxpr, lowering that to StableHLO,
and in XLA's compile (or loading the program from the persistent cache: jax times both as the compile). The first two
are Python work a cache hit still pays, since the lowered program is the cache's key.

    events = compile_log.start()   # before the work
    ...
    compile_log.seconds(events, "trace")   # summed over the programs
"""

from __future__ import annotations

import dataclasses
import logging
import threading

# The start of each message jax logs when a phase ends, per phase.
_FINISHED = {
    "trace": "Finished tracing ",
    "lower": "Finished jaxpr to MLIR module conversion ",
    "compile": "Finished XLA compilation of ",
}


@dataclasses.dataclass(frozen=True)
class Event:
    phase: str  # "trace", "lower", "compile", or "start" (jax is about to lower and compile `program`)
    program: str  # the jitted function's name
    seconds: float  # 0 for "start"
    thread: str  # the Python thread that did it


def start() -> list[Event]:
    """Turns on jax's compile log, stops it from printing, and returns the list its events are appended to."""
    import jax

    events: list[Event] = []

    class Collect(logging.Handler):
        def emit(self, record):
            event = _parse(record.getMessage())
            if event is not None:
                events.append(dataclasses.replace(event, thread=threading.current_thread().name))

    jax.config.update("jax_log_compiles", True)
    logger = logging.getLogger("jax")
    logger.addHandler(Collect())
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    return events


def seconds(events: list[Event], phase: str, program: str | None = None) -> float:
    """The seconds spent in `phase`, summed over every program (or over `program`'s)."""
    return sum(e.seconds for e in events if e.phase == phase and program in (None, e.program))


def count(events: list[Event], phase: str, program: str | None = None) -> int:
    return sum(1 for e in events if e.phase == phase and program in (None, e.program))


def _parse(message: str) -> Event | None:
    if message.startswith("Compiling "):  # "Compiling jit(name) with global shapes and types ..."
        return Event("start", _program(message.split()[1]), 0.0, "")
    for phase, head in _FINISHED.items():
        if message.startswith(head):
            # "... tracing NAME for jit in S sec", "... conversion jit(NAME) in S sec", "... of jit(NAME) in S sec"
            subject, _, tail = message[len(head) :].rpartition(" in ")
            name = subject.split()[0] if phase == "trace" else subject
            return Event(phase, _program(name), float(tail.split()[0]), "")
    return None


def _program(name: str) -> str:
    return name[len("jit(") : -1] if name.startswith("jit(") and name.endswith(")") else name
