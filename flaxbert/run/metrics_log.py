"""`metrics.jsonl`: one JSON object a line, one line per log step and per evaluation, kept consistent on resume."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    """Appends rows to `path`. Resuming at step `resume_step` first drops the rows a killed run wrote after it,
    so the file reads as if the run had never stopped."""

    def __init__(self, path, resume_step: int | None = None, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        if not enabled:
            return
        kept = [row for row in read(self.path) if row["step"] <= resume_step] if resume_step is not None else []
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
        tmp.replace(self.path)

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")


def read(path) -> list[dict]:
    """The rows of `path`, less a last line cut short (a run killed while appending it: a resume drops it anyway)."""
    path = Path(path)
    if not path.exists():
        return []
    lines = [(number, line) for number, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    rows = []
    for number, line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError as error:  # JSONDecodeError
            if number == lines[-1][0]:
                break
            raise ValueError(
                f"{path} line {number} is not a metrics row ({error}); delete that line (the rows are one JSON object "
                "each) and run the command again."
            ) from None
    return rows
