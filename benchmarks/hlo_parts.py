"""The part of the model each instruction of a compiled XLA program comes from, to name a kernel profile's rows.

jax writes where each op was traced into the HLO's `op_name` metadata, e.g.
`jit(train_step_summed)/transpose(jvp(BertClassifier))/backbone/jit(apply)/TransformerLayer/feedforward_layer_norm/mul`:
the pass (`jvp(...)` the forward pass, `transpose(jvp(...))` its derivative, neither: the optimizer update, the
metrics and the step's own arithmetic) and the module path (`TransformerLayer/feedforward_layer_norm`). A fusion runs
many ops as one kernel; it takes the path most of its ops share, or the two most common when none has half. A custom
call (a cuBLAS matmul, a Pallas kernel) has one op_name of its own.

    labels = hlo_parts.labels(compiled.as_text())   # {"fusion.690": "backward layer/feedforward_layer_norm", ...}
    labels[hlo_parts.instruction("loop_add_fusion_5")]  # a GPU kernel named after its fusion
"""

from __future__ import annotations

import collections
import re

_HEADER = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")  # `%fused_computation.3 (param_0: f32[8]) -> f32[8] {`
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_CALLS = re.compile(r"calls=%?([\w.\-]+)")
_OPERANDS = re.compile(r"^[^(]*\(([^)]*)\)")  # `f32[8] add(%a, %b), ...` -> `%a, %b`
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_MODULE = re.compile(r"^[A-Za-z_]\w*$")  # a flax module's name; einsum specs, `Dropout_0.keep`, `jit(...)` are not
_UNNAMED = "(no op_name)"


def part(op_name: str) -> str:
    """'forward' / 'backward' / 'update' and the module path of one op_name (without the program and the primitive)."""
    tokens = op_name.split("/")
    if tokens and tokens[0].startswith("jit("):  # the program itself: jit(train_step_summed)
        tokens = tokens[1:]
    if len(tokens) < 2:
        return "update"
    head, inner = tokens[0], tokens[1:-1]
    if head.startswith("transpose("):
        direction = "backward"
    elif head.startswith("jvp("):
        direction = "forward"
    else:
        return "update"
    modules = []
    for token in inner:
        if token == "jit(apply)":  # the jitted layer (models/layers.py) sits between the backbone and its layer
            continue
        if not _MODULE.match(token):
            break
        modules.append("layer" if token == "TransformerLayer" else token)
    if modules and modules[0] == "backbone" and len(modules) > 1:
        modules = modules[1:]
    return f"{direction} {'/'.join(modules) or head}"


def labels(hlo_text: str) -> dict[str, str]:
    """Instruction name -> the part its ops come from, for every instruction of an HLO module's text."""
    op_names: dict[str, list[str]] = {}  # computation -> the op_names of its instructions
    instructions: dict[str, tuple[str | None, str | None]] = {}  # name -> (its own op_name, the computation it calls)
    operands: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in hlo_text.splitlines():
        header = _HEADER.match(line)
        if header and "=" not in line.split("(", 1)[0]:
            current = op_names.setdefault(header.group(1), [])
            continue
        found = _INSTRUCTION.match(line)
        if found is None or current is None:
            continue
        name, rest = found.groups()
        own = _OP_NAME.search(rest)
        calls = _CALLS.search(rest)
        if own:
            current.append(own.group(1))
        instructions[name] = (own.group(1) if own else None, calls.group(1) if calls else None)
        listed = _OPERANDS.match(rest)
        operands[name] = [o.strip().lstrip("%") for o in listed.group(1).split(",")] if listed else []
    named = {}
    for name, (own, called) in instructions.items():
        names = op_names.get(called) or ([own] if own else [])
        named[name] = _majority([part(n) for n in names])
    for name, label in named.items():  # XLA:CPU drops some ops' metadata (a dot after layout assignment): the
        if label == _UNNAMED:  # part of its first operand that has one, marked as a guess
            guess = next((named[o] for o in operands[name] if named.get(o, _UNNAMED) != _UNNAMED), None)
            named[name] = f"~{guess}" if guess and not guess.startswith("~") else label
    return named


def _majority(parts: list[str]) -> str:
    if not parts:
        return _UNNAMED
    ranked = collections.Counter(parts).most_common(2)
    if len(ranked) == 1 or ranked[0][1] * 2 >= len(parts):
        return ranked[0][0]
    return f"{ranked[0][0]} + {ranked[1][0]}"


def instruction(kernel: str) -> str:
    """The HLO instruction an XLA:GPU kernel is named after: `input_add_reduce_fusion_9` -> `input_add_reduce_fusion.9`
    (a profile's `hlo_op` argument, where the trace has one, names it directly)."""
    return re.sub(r"_(\d+)$", r".\1", kernel)
