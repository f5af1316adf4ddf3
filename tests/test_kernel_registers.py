"""benchmarks/kernel_registers.py: kernels' registers, spills and performance notes read from `ptxas -v`'s report."""

import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import kernel_registers  # noqa: E402

# ptxas 13.5's report for a file of two kernels (from session 34's attention kernels, with one note moved before its
# kernel's lines, as ptxas prints some).
_REPORT = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_forward_kernel' for 'sm_90a'
ptxas info    : Function properties for _forward_kernel
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 127 registers, used 1 barriers
ptxas info    : Compile time = 106.140 ms
ptxas info    : (C7511) Potential Performance Loss: wgmma.mma_async instructions are serialized due to insufficient \
register resources for the wgmma pipeline in the function '_backward_kernel' in line 1178
ptxas info    : Compiling entry function '_backward_kernel' for 'sm_90a'
ptxas info    : Function properties for _backward_kernel
    1224 bytes stack frame, 1324 bytes spill stores, 1192 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 1224 bytes cumulative stack size
ptxas info    : (C7517) wgmma.wait_group is injected in around line 1489 by compiler to allow use of registers \
defined by GMMA in function '_backward_kernel'
ptxas info    : Compile time = 561.428 ms
"""


def test_each_entry_function_gets_its_registers_spills_and_notes():
    forward, backward = kernel_registers.kernels_in(_REPORT)
    assert forward == kernel_registers.Kernel("_forward_kernel", 127, 0, 0, 0, ())
    assert backward == kernel_registers.Kernel("_backward_kernel", 255, 1324, 1192, 1224, ("C7511", "C7517"))


def test_the_table_lists_pallas_kernels_and_flagged_xla_kernels_and_sums_the_rest():
    kernels = kernel_registers.kernels_in(_REPORT) + [
        kernel_registers.Kernel("_layer_norm_backward_kernel__2", 168, 0, 0, 0),
        kernel_registers.Kernel("loop_add_fusion_3", 14, 0, 0, 0),
        kernel_registers.Kernel("fusion_547", 117, 0, 0, 0),
        kernel_registers.Kernel("input_reduce_fusion_9", 40, 8, 8, 8),
    ]
    lines = kernel_registers.table("bert_base:32:bfloat16", kernels)
    assert lines[0] == "## bert_base:32:bfloat16: 6 distinct kernels (3 Pallas), 2 spilling or noted"
    rows = [line.split(" | ")[0].strip("| ") for line in lines[3:-1]]
    assert rows == ["_backward_kernel", "_forward_kernel", "_layer_norm_backward_kernel__2", "input_reduce_fusion_9"]
    assert lines[3].endswith("| C7511 x1, C7517 x1 |")
    assert lines[-1] == "XLA's 2 other kernels: no spills or notes, 117 registers at most"
