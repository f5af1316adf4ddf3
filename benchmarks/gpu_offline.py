"""flaxbert's train step (or predict step) compiled for an NVIDIA GPU on a host without one: its kernels and the
bytes they move.

XLA compiles for a GPU it is told about (a target config: compute capability, SM count, memory and bandwidth) without
the GPU being there (jax's "deviceless" ahead-of-time compile through `jax.experimental.topologies`). The program is
the one a GPU host would build, less autotuning (no device to time cuBLAS's algorithms on; the fusions and the kernel
list do not depend on it). This reads that program: one row per kernel the step launches (each fusion, cuBLAS call and
Pallas kernel of the entry computation), its kind, the part of the model it comes from (`hlo_parts.py`) and the bytes
its operands and outputs hold, a lower bound on what it moves through memory. Summed, the bytes over the target's
bandwidth are the step's memory floor; the count is what a small batch pays per launch. Neither is a time: a GPU run
is still the measurement (`gpu_kernel_profile.py`), this is how to see what a change does to the program between runs.

It needs jax's CUDA plugin, which installs on any Linux host (no driver needed to compile), in its own environment so
the project's CPU-only one stays as it is:

    python -m venv /tmp/gpu-aot
    /tmp/gpu-aot/bin/pip install "jax[cuda13]==$(python -c 'import jax; print(jax.__version__)')" flax optax \
        orbax-checkpoint tokenizers huggingface_hub safetensors h5py
    JAX_PLATFORMS=cpu PYTHONPATH=. /tmp/gpu-aot/bin/python benchmarks/gpu_offline.py \
        --variants bert_base:32:bfloat16,bert_base:256:bfloat16 --target h200

On a GPU host the same compile happens inside the first step; here flaxbert's device checks (which ask the running
GPU) are answered for the target instead.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import sys
import time

import hlo_parts
import numpy as np
import peers

SEQ = 128
# XLA's GpuDeviceInfoProto for each target (public spec sheet figures; Hopper's SM limits).
_HOPPER = """
gpu_device_info {{
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth} l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: {memory} shared_memory_per_block_optin: 232448
  cuda_compute_capability {{ major: 9 minor: 0 }}
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 10 }}
runtime_version {{ major: 13 minor: 0 }}
device_description_str: "{name}"
"""
TARGETS = {
    "h100": dict(name="NVIDIA H100 80GB HBM3", bandwidth=3_352_320_000_000, memory=84_929_347_584),
    "h200": dict(name="NVIDIA H200", bandwidth=4_800_000_000_000, memory=150_083_502_080),
}
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
          "f64": 8, "s64": 8, "u64": 8}  # fmt: skip
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([\d,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")
_LINE = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\([^=]*?\)|\S+)\s+([\w\-]+)\((.*)$")
_NOT_KERNELS = {"parameter", "tuple", "get-tuple-element", "bitcast", "constant", "partition-id", "replica-id",
                "after-all", "opt-barrier"}  # fmt: skip


def target_device(target: str):
    """A compile-only device of `target` ("h100" / "h200")."""
    from jax.experimental import topologies

    config = _HOPPER.format(**TARGETS[target])
    return topologies.get_topology_desc(platform="cuda", target_config=config, topology="1x1x1").devices[0]


def answer_for(device) -> None:
    """Makes flaxbert's device checks (`target_device`, `is_cuda`, the compiler options' probe compile) answer for
    the compile-only `device` instead of asking a running GPU."""
    import flaxbert.compilation as compilation
    import flaxbert.models.dropout_layer as dropout_layer
    import flaxbert.models.fused_attention as fused_attention
    import flaxbert.models.layer_norm as layer_norm
    import flaxbert.models.layers as layers
    import flaxbert.models.target_device as target_module

    for module in (target_module, layers, fused_attention, dropout_layer, layer_norm):
        module.target_device = lambda: device
    for module in (target_module, compilation):
        module.is_cuda = lambda d: d.platform == "gpu"
    compilation._accepted = lambda platform, options: True


def compiled_train_step(device, model: str, batch: int, precision: str, attention_kernel: str = "auto") -> tuple:
    """(the optimized HLO text, lower seconds, compile seconds) of the train step `throughput.py` times."""
    import jax

    from flaxbert.parallel import batch_sharding, replicated
    from flaxbert.training import programs, shared_steps, steps

    classifier = peers.flaxbert_classifier(model, precision, attention_kernel=attention_kernel)
    mesh = jax.sharding.Mesh(np.array([device]).reshape(1, 1), ("data", "fsdp"))
    (train_fn, _), _, (abstract, shardings) = shared_steps.train_steps(
        classifier.model, classifier.backbone.config, mesh, classifier.optimizer, classifier.loss
    )
    rows, one = batch_sharding(mesh), replicated(mesh)
    x, y = peers.random_inputs(model, batch, SEQ)

    def spec(shape, dtype, sharding=rows):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    batch_spec = {"inputs": {k: spec(v.shape, v.dtype) for k, v in x.items()}, "label": spec(y.shape, y.dtype),
                  "weight": spec((batch,), np.float32), "mask": spec((batch,), np.float32)}  # fmt: skip
    sums = jax.tree.map(lambda a: spec(a.shape, a.dtype, one), jax.eval_shape(steps.zero_sums))
    start = time.perf_counter()
    lowered = train_fn.lower(programs.state_spec(abstract, shardings), {"epoch": sums, "window": sums}, batch_spec,
                             spec((), np.uint32, one))  # fmt: skip
    lowered_at = time.perf_counter()
    text = lowered.compile().as_text()
    return text, lowered_at - start, time.perf_counter() - lowered_at


def compiled_predict_step(device, model: str, batch: int, precision: str, attention_kernel: str = "auto") -> tuple:
    """(the optimized HLO text, lower seconds, compile seconds) of the predict step `predict` runs: on the params as
    `programs.model_params` gives them (cast to the compute dtype once per call)."""
    import jax

    from flaxbert.parallel import batch_sharding
    from flaxbert.training import programs, shared_steps

    classifier = peers.flaxbert_classifier(model, precision, attention_kernel=attention_kernel)
    mesh = jax.sharding.Mesh(np.array([device]).reshape(1, 1), ("data", "fsdp"))
    predict_fn, shardings = shared_steps.predict_step(classifier.model, classifier.backbone.config, mesh)
    cast = programs.model_params(classifier.params, classifier.backbone.config.dtype)  # here, on the host's CPU
    params = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), cast, shardings)
    x, _ = peers.random_inputs(model, batch, SEQ)
    inputs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding(mesh)) for k, v in x.items()}
    start = time.perf_counter()
    lowered = predict_fn.lower(params, inputs)
    lowered_at = time.perf_counter()
    text = lowered.compile().as_text()
    return text, lowered_at - start, time.perf_counter() - lowered_at


def nbytes(shape_text: str) -> int:
    """The bytes of every array in an HLO shape (a tuple's summed)."""
    return sum(
        int(np.prod([int(d) for d in dims.split(",") if d])) * _BYTES[dt] for dt, dims in _ARRAY.findall(shape_text)
    )


def kernels(hlo_text: str) -> list[tuple[str, str, int, str]]:
    """(instruction, kind, bytes of its operands and outputs, part of the model) of each kernel the entry computation
    launches, in order: "matmul" (cuBLAS), "pallas" (a Triton custom call), "fusion:<kind>" or the opcode."""
    computations: dict[str, list[str]] = {}
    shapes: dict[tuple[str, str], str] = {}
    current = entry = None
    for line in hlo_text.splitlines():
        header = _HEADER.match(line)
        if header and not line.startswith(" "):
            current = header.group(2)
            computations[current] = []
            entry = current if header.group(1) else entry
        elif line.startswith("}"):
            current = None
        elif current:
            computations[current].append(line)
            parsed = _LINE.match(line)
            if parsed:
                shapes[current, parsed.group(1)] = parsed.group(2)
    labels = hlo_parts.labels(hlo_text)
    found = []

    def walk(computation):
        for line in computations[computation]:
            parsed = _LINE.match(line)
            if not parsed or parsed.group(3) in _NOT_KERNELS:
                continue
            name, shape, op, rest = parsed.groups()
            if op in ("call", "while", "conditional"):  # kernels inside run from here
                for callee in re.findall(r"(?:to_apply|calls|body)=%?([\w.\-]+)", line):
                    walk(callee)
                continue
            operands = set(re.findall(r"%([\w.\-]+)", rest.split(")")[0]))  # an array passed twice is read once
            size = nbytes(shape) + sum(nbytes(shapes.get((computation, o), "")) for o in operands)
            if op == "custom-call":
                target = re.search(r'custom_call_target="([^"]+)"', line).group(1)
                kind = (
                    "matmul" if "matmul" in target or "gemm" in target else "pallas" if "triton" in target else target
                )
            elif op == "fusion":
                kind = "fusion:" + re.search(r"kind=(\w+)", line).group(1)[1:]
            else:
                kind = op
            found.append((name, kind, size, labels.get(name, "?")))

    walk(entry)
    return found


def report(variant: str, rows: list, bandwidth: float, lower_s: float, compile_s: float, top: int) -> list[str]:
    total = sum(size for _, _, size, _ in rows)
    lines = [f"## {variant}: {len(rows):,} kernels, {total / 1e9:.2f} GB of operands and outputs "
             f"({total / bandwidth * 1e3:.2f} ms at {bandwidth / 1e12:.2f} TB/s); lower {lower_s:.1f} s, "
             f"compile {compile_s:.1f} s (no autotuning)"]  # fmt: skip
    kinds = collections.defaultdict(lambda: [0, 0])
    for _, kind, size, _ in rows:
        kinds[kind][0] += 1
        kinds[kind][1] += size
    lines.append("by kind:")
    for kind, (count, size) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"  {kind:16s} {count:5d} kernels {size / 1e9:8.3f} GB {size / bandwidth * 1e3:7.2f} ms")
    parts = collections.defaultdict(lambda: [0, 0])
    for _, kind, size, part in rows:
        if kind not in ("matmul", "pallas"):
            parts[part][0] += 1
            parts[part][1] += size
    lines.append(f"other kernels by part of the model (top {top} by bytes):")
    for part, (count, size) in sorted(parts.items(), key=lambda kv: -kv[1][1])[:top]:
        lines.append(f"  {part[:64]:64s} {count:5d} kernels {size / 1e9:8.3f} GB {size / bandwidth * 1e3:7.2f} ms")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="bert_base:32:bfloat16,bert_base:256:bfloat16",
                        help="model:batch:precision[:attention_kernel][:predict][:arm...], comma-separated; "
                             ":predict for the predict step instead of the train step; each arm one of "
                             f"{', '.join(peers.ARMS)} (peers.ARMS: the code before one change)")  # fmt: skip
    parser.add_argument("--target", choices=sorted(TARGETS), default="h200")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--hlo", help="write each variant's optimized HLO to this prefix + variant + .hlo")
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args()
    import jax

    device = target_device(args.target)
    answer_for(device)
    out = [f"target: {device.device_kind} (compile-only), jax {jax.__version__}, seq {SEQ}"]
    for variant in args.variants.split(","):
        model, batch, precision, *rest = variant.split(":")
        with contextlib.ExitStack() as stack:
            for name in set(rest) & set(peers.ARMS):
                stack.enter_context(peers.ARMS[name]())
            kernel = [part for part in rest if part not in peers.ARMS and part != "predict"]
            compiled = compiled_predict_step if "predict" in rest else compiled_train_step
            text, lower_s, compile_s = compiled(device, model, int(batch), precision, *kernel)
        if args.hlo:
            with open(f"{args.hlo}{variant.replace(':', '_')}.hlo", "w") as f:
                f.write(text)
        out += report(variant, kernels(text), TARGETS[args.target]["bandwidth"], lower_s, compile_s, args.top)
        print("\n".join(out[-1:]), file=sys.stderr, flush=True)
    print("\n".join(out))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
