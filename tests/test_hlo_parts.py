"""benchmarks/hlo_parts.py: a compiled program's instructions named after the pass and module their ops come from."""

import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import hlo_parts  # noqa: E402


def test_an_op_name_gives_its_pass_and_module_path():
    step = "jit(train_step_summed)/"
    layer = "backbone/jit(apply)/TransformerLayer"
    assert hlo_parts.part(f"{step}transpose(jvp(BertClassifier))/{layer}/feedforward_layer_norm/mul") == (
        "backward layer/feedforward_layer_norm"
    )
    assert hlo_parts.part(f"{step}jvp(BertClassifier)/{layer}/self_attention/bqhk,bshk->bhqs/dot_general") == (
        "forward layer/self_attention"
    )
    keep = f"{step}jvp(BertClassifier)/{layer}/Dropout_1/Dropout_1.keep/jit(_threefry_fold_in)/train_step/while/add"
    assert hlo_parts.part(keep) == "forward layer/Dropout_1"
    assert hlo_parts.part(f"{step}jvp(BertClassifier)/logits/add") == "forward logits"
    assert hlo_parts.part(f"{step}jvp(jit(take_along_axis))/select_n") == "forward jvp(jit(take_along_axis))"
    assert hlo_parts.part(f"{step}add") == "update"
    assert hlo_parts.part(f"{step}jit(_threefry_fold_in)/train_step/add") == "update"


class _Tiny(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(3, name="head")(jnp.tanh(nn.Dense(4, name="hidden")(x)))


def test_a_compiled_train_step_names_its_forward_backward_and_update_instructions():
    model = _Tiny()
    x = jnp.ones((2, 5))
    params = model.init(jax.random.key(0), x)

    def step(params, x):
        grads = jax.grad(lambda p: jnp.sum(model.apply(p, x) ** 2))(params)
        return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)

    text = jax.jit(step).lower(params, x).compile().as_text()
    found = set(hlo_parts.labels(text).values())
    assert {"forward hidden", "forward head", "backward hidden", "backward head", "update"} <= found, found


_HLO = """HloModule jit_step, entry_computation_layout={(f32[8]{0})->f32[8]{0}}

%fused_computation.3 (param_0.1: f32[8]) -> f32[8] {
  %param_0.1 = f32[8]{0} parameter(0)
  %exp.1 = f32[8]{0} exponential(%param_0.1), metadata={op_name="jit(step)/jvp(M)/dense/exp"}
  %neg.1 = f32[8]{0} negate(%exp.1), metadata={op_name="jit(step)/jvp(M)/dense/neg"}
  ROOT %add.9 = f32[8]{0} add(%neg.1, %exp.1), metadata={op_name="jit(step)/transpose(jvp(M))/norm/add"}
}

%fused_computation.4 (param_0.2: f32[8]) -> f32[8] {
  %param_0.2 = f32[8]{0} parameter(0)
  %sub.1 = f32[8]{0} subtract(%param_0.2, %param_0.2), metadata={op_name="jit(step)/jvp(M)/dense/sub"}
  %mul.1 = f32[8]{0} multiply(%sub.1, %sub.1), metadata={op_name="jit(step)/transpose(jvp(M))/norm/mul"}
  %div.1 = f32[8]{0} divide(%mul.1, %sub.1), metadata={op_name="jit(step)/jvp(M)/embed/div"}
  ROOT %add.2 = f32[8]{0} add(%div.1, %mul.1), metadata={op_name="jit(step)/add"}
}

ENTRY %main.7 (Arg_0.1: f32[8]) -> f32[8] {
  %Arg_0.1 = f32[8]{0} parameter(0)
  %loop_add_fusion.5 = f32[8]{0} fusion(%Arg_0.1), kind=kLoop, calls=%fused_computation.3
  %fusion.12 = f32[8]{0} fusion(%loop_add_fusion.5), kind=kLoop, calls=%fused_computation.4
  %custom-call.2 = f32[8]{0} custom-call(%fusion.12), metadata={op_name="jit(step)/jvp(M)/out/dot_general"}
  ROOT %copy.1 = f32[8]{0} copy(%custom-call.2)
}
"""


def test_a_fusion_takes_the_path_most_of_its_ops_share_and_an_unnamed_op_its_operands():
    named = hlo_parts.labels(_HLO)
    assert named["loop_add_fusion.5"] == "forward dense"  # 2 of its 3 ops
    assert named["fusion.12"] == "forward dense + backward norm"  # 1 each of 4: no majority, the first two seen
    assert named["custom-call.2"] == "forward out"
    assert named["copy.1"] == "~forward out"  # no metadata: its operand's, marked as a guess
    assert named["Arg_0.1"] == "(no op_name)"


def test_a_gpu_kernel_name_is_its_fusion_instruction_name():
    assert hlo_parts.instruction("input_add_reduce_fusion_9") == "input_add_reduce_fusion.9"
    assert hlo_parts.instruction("fusion_690") == "fusion.690"
    assert hlo_parts.instruction("wrapped_convert") == "wrapped_convert"
