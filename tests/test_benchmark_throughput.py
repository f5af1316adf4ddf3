"""benchmarks/throughput.py's report: the chart of a report whose rows all failed."""

import json
import sys

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks import each other as top-level modules
import peers  # noqa: E402
import plot  # noqa: E402
import throughput  # noqa: E402

SEQ = 128
VERSIONS = {"jax": "test"}


def _report(rows):
    return {"benchmark": "throughput", "device": {"kind": "cpu", "cpu": "test", "cpu_count": 2}, "versions": VERSIONS,
            "seq": SEQ, "steps": 3, "repeats": 1, "rounds": 1, "flops_formula": peers.FLOPS_FORMULA,
            "peak_flops": peers.PEAK_FLOPS, "rows": rows}  # fmt: skip


def test_a_report_where_every_row_failed_draws_no_chart(tmp_path):
    rows = [dict(throughput._failed("flaxbert", "bert_tiny", 8, "float32", "timed out after 35s"), round=0)]
    json_path = tmp_path / "all_failed.json"
    json_path.write_text(json.dumps(_report(rows)))
    assert plot.write_png(_report(rows), json_path) == plot.NO_RESULT
    assert not json_path.with_suffix(".png").exists()
