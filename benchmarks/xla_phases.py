"""Where an XLA:GPU compile spent its time, from XLA's own timers in a process's log.

Run the compiling process with

    TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=hlo_pass_pipeline=1,gpu_compiler=1,nvptx_compiler=2 ... 2> xla.log

and then `python benchmarks/xla_phases.py xla.log`: per module, the HLO passes and the backend (code generation and
the kernels' PTX and cubin compiles) in seconds, and the passes that took longest, summed over their runs. Used on a
CPU host with `gpu_offline.py` (a compile for a GPU that is not there, no autotuning) and on a GPU host in
`gpu_session.sh`'s cold compile step (with autotuning: the `autotuner` passes).
"""

from __future__ import annotations

import argparse
import collections
import re

_TIMER = re.compile(r"\] (.+?) time: ([\d.]+) (s|ms|us) \(")
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def phases(lines) -> tuple[dict, dict]:
    """({(phase, module): seconds} for the whole-module timers, {pass name: (seconds, runs)})."""
    modules, passes = {}, collections.defaultdict(lambda: [0.0, 0])
    for line in lines:
        found = _TIMER.search(line)
        if not found:
            continue
        name, seconds = found.group(1), float(found.group(2)) * _SECONDS[found.group(3)]
        if name.startswith("HLO pass: "):
            entry = passes[name.removeprefix("HLO pass: ")]
            entry[0] += seconds
            entry[1] += 1
            continue
        whole = re.match(r"GpuCompiler::(RunHloPasses|RunBackend) for (\S+)", name)
        if whole:
            modules[whole.group(1), whole.group(2)] = modules.get((whole.group(1), whole.group(2)), 0.0) + seconds
        elif name.startswith("NVPTXCompiler::CompileTargetBinary - "):
            entry = passes[name.split(" - ")[1].split(" for ")[0] + " (per kernel module)"]
            entry[0] += seconds
            entry[1] += 1
    return modules, dict(passes)


def report(lines, top: int = 8) -> str:
    modules, passes = phases(lines)
    out = [f"{phase:12s} {module[:48]:48s} {seconds:7.2f} s" for (phase, module), seconds in sorted(modules.items())]
    out.append(f"longest passes and kernel compiles (summed; top {top}):")
    ranked = sorted(passes.items(), key=lambda kv: -kv[1][0])[:top]
    out += [f"  {name[:52]:52s} {seconds:7.2f} s in {runs} runs" for name, (seconds, runs) in ranked]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", help="a log written with the TF_CPP_VMODULE above")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    with open(args.log, errors="replace") as f:
        print(report(f, args.top))


if __name__ == "__main__":
    main()
