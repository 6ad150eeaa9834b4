"""Training metrics to ``RUN_DIR/metrics.csv`` and TensorBoard, consistent across resumes.

A run killed after its last checkpoint has logged steps the resumed run will redo; on
resume both logs are cut back to the checkpoint's step (CSV rows dropped, TensorBoard
``purge_step``), so every step appears once.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lapo_ros.common.files import atomic_path

STEP_COLUMN = "step"


class MetricsLog:
    """Append-only metric rows keyed by step; columns grow as new metrics appear."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.csv_path = run_dir / "metrics.csv"
        self._rows: list[dict[str, str]] = []
        if resume_step is not None and self.csv_path.exists():
            with self.csv_path.open(newline="") as handle:
                self._rows = [row for row in csv.DictReader(handle)
                              if _step_of(row) <= resume_step]
        self._columns = [STEP_COLUMN]
        for row in self._rows:
            self._add_columns(row)
        self._rewrite()
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(
            log_dir=str(run_dir / "tensorboard"),
            purge_step=None if resume_step is None else resume_step + 1,
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {STEP_COLUMN: str(step)}
        row.update({k: _format(v) for k, v in metrics.items()})
        for key, value in metrics.items():
            if math.isfinite(value):
                self._writer.add_scalar(key, value, step)
        self._rows.append(row)
        if self._add_columns(row):
            self._rewrite()
        else:
            with self.csv_path.open("a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self._columns).writerow(row)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def _add_columns(self, row: dict[str, str]) -> bool:
        new = [key for key in row if key not in self._columns]
        self._columns.extend(new)
        return bool(new)

    def _rewrite(self) -> None:
        with atomic_path(self.csv_path) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(self._rows)


def _step_of(row: dict[str, str]) -> int:
    try:
        return int(row.get(STEP_COLUMN) or -1)
    except ValueError:
        return -1


def _format(value: float) -> str:
    return f"{value:.6g}"


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of a metrics CSV as floats (empty cells left out)."""
    with Path(path).open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)}
                for row in csv.DictReader(handle)]
