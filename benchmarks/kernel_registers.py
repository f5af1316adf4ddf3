"""Registers and spills of the GPU kernels in flaxbert's train step, compiled for an NVIDIA GPU on a host without one.

A kernel that needs more registers than a thread may hold (255) spills the rest to local memory, which is slow; how
many it needs also decides how many of its programs share an SM. Both are fixed at compile time, so they can be read
without the GPU: this compiles the train step for the target as `gpu_offline.py` does, with XLA writing the PTX of
its kernels to a dump folder, and runs NVIDIA's assembler on each file (`ptxas -v`, from the CUDA plugin's wheels) for
the target's architecture. It prints one row per Pallas kernel (flaxbert's, named after their Python functions) and
per XLA kernel that spills or that ptxas notes a performance loss in, and a line for the rest of XLA's: registers per
thread, spill stores and loads, stack frame, and the codes of ptxas's notes (C7511: wgmma instructions serialized for
want of registers; C7517: a wait for wgmma's results injected before they are read, so the next matmul does not
overlap it). Each distinct kernel is compiled once however often the step launches it. Timing them is still a GPU
run's (`gpu_kernel_profile.py`); this is the check a kernel's block sizes get before one.

    JAX_PLATFORMS=cpu PYTHONPATH=. /tmp/gpu-aot/bin/python benchmarks/kernel_registers.py \
        --variants bert_base:32:bfloat16,bert_base:32:bfloat16:two_attention_bwd
    ... kernel_registers.py --attention 128:64:32:8:1,128:64:16:8:1,128:32:16:8:1   # the attention kernels alone

(the environment `gpu_offline.py` describes; a variant is `model:batch:precision[:attention_kernel][:arm...]`; an
attention setting is `length:head_dim:block_rows:warps:backward kernels (1 or 2)`, 0 for a default, compiled as the
bf16 forward and backward pass of 32 sequences of 12 heads with dropout.)
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '([^']+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
# ptxas's performance notes name their function: e.g. (C7511) wgmma serialized for want of registers, (C7517) a wait
# for wgmma's results injected.
_NOTE = re.compile(r"\((C\d+)\) .*function '([^']+)'")


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack: int
    notes: tuple[str, ...] = ()  # ptxas's performance notes' codes, one per note


def ptxas() -> str:
    """The CUDA assembler of the `nvidia` wheels jax's CUDA plugin installs (the PTX version XLA writes is theirs), or
    else the one on PATH."""
    with contextlib.suppress(ImportError):
        import nvidia

        for root in nvidia.__path__:
            for path in sorted(pathlib.Path(root).glob("*/bin/ptxas")):
                return str(path)
    found = shutil.which("ptxas")
    if found is None:
        raise SystemExit("no ptxas: install jax's CUDA plugin (its nvidia wheels carry it) or put CUDA's bin on PATH")
    return found


def assembled(ptx: pathlib.Path, arch: str, assembler: str) -> list[Kernel]:
    """Every entry function of one PTX file, as `ptxas -v` reports it for `arch`."""
    run = subprocess.run([assembler, "-v", f"-arch={arch}", str(ptx), "-o", os.devnull], capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"{assembler} failed on {ptx.name}:\n{run.stderr[-2000:]}")
    return kernels_in(run.stderr)


def kernels_in(report: str) -> list[Kernel]:
    """The entry functions of a `ptxas -v` report, each with its notes (which may come before its own lines)."""
    notes = collections.defaultdict(list)
    for code, name in _NOTE.findall(report):
        notes[name].append(code)
    kernels, name, frame = [], None, (0, 0, 0)
    for line in report.splitlines():
        if m := _ENTRY.search(line):
            name, frame = m.group(1), (0, 0, 0)
        elif m := _FRAME.search(line):
            frame = tuple(int(x) for x in m.groups())
        elif (m := _USED.search(line)) and name is not None:
            stack, stores, loads = frame
            kernels.append(Kernel(name, int(m.group(1)), stores, loads, stack, tuple(notes[name])))
            name = None
    return kernels


def compiled_kernels(dump: pathlib.Path, arch: str) -> list[Kernel]:
    """Every entry function of every PTX file XLA wrote (it splits a program's kernels over several modules)."""
    assembler, kernels = ptxas(), []
    for ptx in sorted(dump.glob("*.ptx")):
        if ptx.stat().st_size:  # XLA writes an empty file for a module left without kernels
            kernels += assembled(ptx, arch, assembler)
    return kernels


def table(variant: str, kernels: list[Kernel]) -> list[str]:
    pallas = [k for k in kernels if re.search(r"_kernel(__\d+)?$", k.name)]
    flagged = [k for k in kernels if k.spill_stores or k.spill_loads or k.notes]
    lines = [f"## {variant}: {len(kernels)} distinct kernels ({len(pallas)} Pallas), {len(flagged)} spilling or noted",
             "| kernel | registers | spill stores B | spill loads B | stack B | ptxas notes |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for k in sorted(pallas, key=lambda k: k.name) + [k for k in flagged if k not in pallas]:
        notes = ", ".join(f"{code} x{n}" for code, n in collections.Counter(k.notes).items())
        lines.append(f"| {k.name} | {k.registers} | {k.spill_stores} | {k.spill_loads} | {k.stack} | {notes} |")
    rest = [k for k in kernels if k not in pallas and k not in flagged]
    if rest:
        lines.append(f"XLA's {len(rest)} other kernels: no spills or notes, {max(k.registers for k in rest)} registers "
                     "at most")  # fmt: skip
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="bert_base:32:bfloat16", help="as gpu_offline.py's, comma-separated")
    parser.add_argument("--target", default="h200", help="gpu_offline.py's targets")
    parser.add_argument("--attention", help="attention settings to compile alone instead (see above), comma-separated")
    parser.add_argument("--arch", default="sm_90a", help="the architecture ptxas assembles for (Hopper: sm_90a)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one variant in its own process: XLA reads its dump folder from XLA_FLAGS when jax starts
        compile_variant(*args.child, args.target)
        return
    out = [f"target: {args.target}, ptxas -arch={args.arch}"]
    variants = [f"attention:{a}" for a in args.attention.split(",")] if args.attention else args.variants.split(",")
    for variant in variants:
        with tempfile.TemporaryDirectory() as dump:
            env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_dump_to={dump}".strip())
            subprocess.run([sys.executable, __file__, "--target", args.target, "--child", variant, dump], env=env,
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            out += table(variant, compiled_kernels(pathlib.Path(dump), args.arch))
        print("\n".join(out[-1:]), file=sys.stderr, flush=True)
    print("\n".join(out))


def compile_variant(variant: str, dump: str, target: str) -> None:
    import gpu_offline
    import peers

    device = gpu_offline.target_device(target)
    gpu_offline.answer_for(device)
    if variant.startswith("attention:"):
        compile_attention(device, *(int(x) for x in variant.split(":")[1:]))
        return
    model, batch, precision, *rest = variant.split(":")
    with contextlib.ExitStack() as stack:
        for name in set(rest) & set(peers.ARMS):
            stack.enter_context(peers.ARMS[name]())
        kernel = [part for part in rest if part not in peers.ARMS]
        gpu_offline.compiled_train_step(device, model, int(batch), precision, *kernel)


def compile_attention(device, length: int, head_dim: int, rows: int, warps: int, backward: int) -> None:
    """The Pallas attention's forward and backward kernels alone, bf16, batch 32, 12 heads, dropout 0.1."""
    import jax
    import jax.numpy as jnp

    from flaxbert.models import fused_attention
    from flaxbert.models.dropout import keep_scale

    one = {0: None, 1: True, 2: False}[backward]
    static = fused_attention._settings(length, length, head_dim, keep_scale(0.1), rows or None, warps or None, one,
                                       interpret=False)  # fmt: skip

    def grads(qkv, codes, keep, cotangent):
        def loss(qkv):
            return jnp.sum(fused_attention._attention(qkv, codes, keep, static).astype(jnp.float32) * cotangent)

        return jax.grad(loss)(qkv)

    def spec(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=jax.sharding.SingleDeviceSharding(device))

    batch, heads = 32, 12
    args = (spec((batch, length, 3, heads, head_dim), jnp.bfloat16), spec((batch, length), jnp.int32),
            spec((batch, heads, length, length), jnp.int8),
            spec((batch, length, heads, head_dim), jnp.float32))  # fmt: skip
    jax.jit(grads).trace(*args).lower(lowering_platforms=("cuda",)).compile()


if __name__ == "__main__":
    main()
