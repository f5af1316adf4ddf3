"""benchmarks/xla_phases.py: XLA's compile timers read from a log, per module and per pass."""

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import xla_phases  # noqa: E402

_PREFIX = "I1205 13:14:40.652452   28979 some_file.cc:176] "
_CUMULATIVE = " (cumulative: 9.9 s, max: 9.9 s, #called: 1)"
_STEP = " for jit_train_step_summed time: "
_LOG = [
    _PREFIX + "xla_enable_scoped_logging_timers: true",
    _PREFIX + "HLO pass: priority-fusion time: 4.56 s (4557368 us)" + _CUMULATIVE,
    _PREFIX + "HLO pass: priority-fusion time: 250 ms (250000 us)" + _CUMULATIVE,
    _PREFIX + "HLO pass: cse time: 900 us (900 us)" + _CUMULATIVE,
    _PREFIX + "GpuCompiler::RunHloPasses" + _STEP + "6.85 s (6852231 us)" + _CUMULATIVE,
    _PREFIX + "NVPTXCompiler::CompileTargetBinary - PtxToCubin" + _STEP + "40.1 ms (40144 us)" + _CUMULATIVE,
    _PREFIX + "NVPTXCompiler::CompileTargetBinary - PtxToCubin" + _STEP + "19.9 ms (19856 us)" + _CUMULATIVE,
    _PREFIX + "GpuCompiler::RunBackend" + _STEP + "5.52 s (5519964 us)" + _CUMULATIVE,
    "W1205 13:14:47.000000   28979 other.cc:1] not a timer line",
]


def test_module_phases_and_summed_passes_are_read_in_seconds():
    modules, passes = xla_phases.phases(_LOG)
    assert modules == {("RunHloPasses", "jit_train_step_summed"): 6.85, ("RunBackend", "jit_train_step_summed"): 5.52}
    seconds, runs = passes["priority-fusion"]
    assert abs(seconds - 4.81) < 1e-9 and runs == 2
    assert abs(passes["cse"][0] - 0.0009) < 1e-12
    seconds, runs = passes["PtxToCubin (per kernel module)"]
    assert abs(seconds - 0.06) < 1e-9 and runs == 2


def test_report_ranks_the_longest_passes_first():
    lines = xla_phases.report(_LOG, top=2).splitlines()
    assert lines[0].split() == ["RunBackend", "jit_train_step_summed", "5.52", "s"]
    assert lines[1].split() == ["RunHloPasses", "jit_train_step_summed", "6.85", "s"]
    assert lines[3].split()[0] == "priority-fusion" and lines[4].split()[0] == "PtxToCubin"
    assert len(lines) == 5  # top 2: cse is left out
