"""One console line per verl step, read from the file logger's JSONL while the run writes it.

verl's file logger (``VERL_FILE_LOGGER_PATH``) appends one record ``{"step": k, "data": {...}}`` per step (the
step's training metrics and, on a validation step, its ``val-core/...`` metrics) plus one for the validation
before training (step 0). ``follow_metrics`` polls that file in a thread while the run goes on and prints what
``RunProgress`` makes of each new record::

    run 1/3 uniform on-policy distillation | step 12/40 | held-out acc 0.312 (step 10) | 2.1 s/step | ETA 59s
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRAIN_STEP_KEY = "training/global_step"
VAL_ACC_PREFIX, VAL_ACC_SUFFIX = "val-core/", "/acc/mean@1"


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def held_out_accuracy(data: dict) -> float | None:
    """verl's greedy validation accuracy in one record (mean of ``val-core/<source>/acc/mean@1``), if any."""
    values = [v for k, v in data.items() if k.startswith(VAL_ACC_PREFIX) and k.endswith(VAL_ACC_SUFFIX)]
    return float(sum(values) / len(values)) if values else None


def step_seconds(data: dict) -> float | None:
    """Wall time of a training step as verl timed it: ``timing_s/step`` plus its validation (``timing_s/testing``,
    timed outside the step)."""
    if "timing_s/step" not in data:
        return None
    return float(data["timing_s/step"]) + float(data.get("timing_s/testing", 0.0))


@dataclass
class RunProgress:
    """Progress of run ``index`` of ``runs`` (``total_steps`` training steps): ``update`` returns its line for a
    record, or None for a record without training or validation."""

    index: int
    runs: int
    label: str
    total_steps: int
    accuracy: float | None = None
    accuracy_step: int | None = None
    durations: list[float] = field(default_factory=list)

    def seconds_per_step(self) -> float | None:
        """Mean logged step time; the first step (warm-up) is left out once there are three."""
        times = self.durations[1:] if len(self.durations) >= 3 else self.durations
        return sum(times) / len(times) if times else None

    def eta_seconds(self, step: int) -> float | None:
        per_step = self.seconds_per_step()
        return None if per_step is None else per_step * max(0, self.total_steps - step)

    def update(self, step: int, data: dict) -> str | None:
        accuracy = held_out_accuracy(data)
        if accuracy is not None:
            self.accuracy, self.accuracy_step = accuracy, step
        head = f"run {self.index}/{self.runs} {self.label}"
        if TRAIN_STEP_KEY not in data:
            if accuracy is None:
                return None
            return f"{head} | step {step}/{self.total_steps} | held-out acc {accuracy:.3f} (before training)"
        seconds = step_seconds(data)
        if seconds is not None:
            self.durations.append(seconds)
        parts = [head, f"step {step}/{self.total_steps}"]
        if self.accuracy is None:
            parts.append("held-out acc -")
        else:
            parts.append(f"held-out acc {self.accuracy:.3f} (step {self.accuracy_step})")
        per_step = self.seconds_per_step()
        if per_step is not None:
            parts.append(f"{per_step:.1f} s/step")
        eta = self.eta_seconds(step)
        parts.append("ETA " + (format_duration(eta) if eta is not None else "-"))
        return " | ".join(parts)


class MetricsTail:
    """The complete records appended to a JSONL file since the last ``poll``.

    The file may not exist yet, and is started afresh by each verl run (truncated or replaced): then it is read
    from the start again. A line still being written (no newline yet) waits for the next poll."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.offset = 0
        self.inode = None

    def poll(self) -> list[tuple[int, dict]]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset = stat.st_ino, 0
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        records = []
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                records.append((int(record["step"]), dict(record["data"])))
            except (ValueError, KeyError, TypeError):
                continue  # not a verl record: skipped, the run's own checks read the file afterwards
        return records


@contextlib.contextmanager
def follow_metrics(
    path: Path, progress: RunProgress, interval_s: float = 1.0, emit: Callable[[str], None] | None = None
):
    """While the block runs, print (``emit``) ``progress``'s line for each record verl appends to ``path``; the
    records left when the block ends are printed too."""
    emit = emit or (lambda line: print(line, flush=True))
    tail, stop = MetricsTail(path), threading.Event()

    def drain():
        for step, data in tail.poll():
            line = progress.update(step, data)
            if line:
                emit(line)

    def loop():
        while not stop.wait(interval_s):
            with contextlib.suppress(OSError):
                drain()

    thread = threading.Thread(target=loop, name="verl-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join()
        drain()
