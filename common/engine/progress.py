"""Run logging: the ``logging`` set-up, per-iteration progress lines, per-epoch JSON lines, TensorBoard."""
from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from common.files import open_append_text

logger = logging.getLogger(__name__)

LOG_FORMAT = "[%(asctime)s %(levelname)s %(name)s] %(message)s"
LOG_FILE = "log.txt"
JSON_LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_PREFIX = "events.out.tfevents."  # the names of SummaryWriter's files


PROGRESS = {"progress": True}  # ``extra`` of progress lines (iteration, ETA): see ``show_on_console_only``

_console_loggers: Tuple[str, ...] = ()  # empty: the console shows every INFO record


def setup_logging(output_dir: Optional[str], *, is_main: bool) -> None:
    """INFO to stdout and ``OUTPUT_DIR/log.txt`` (none without ``output_dir``) on the main rank,
    warnings only elsewhere. A second call (the next job in the same process) replaces the
    handlers of the first."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_convmae", False):
            root.removeHandler(handler)
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    console = logging.StreamHandler(sys.stdout)
    console.addFilter(_console_filter)
    handlers: List[logging.Handler] = [console]
    if is_main and output_dir:
        os.makedirs(output_dir, exist_ok=True)
        handlers.append(NoFollowFileHandler(os.path.join(output_dir, LOG_FILE)))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler._convmae = True  # so a second run in the same process replaces, not duplicates
        root.addHandler(handler)


class NoFollowFileHandler(logging.FileHandler):
    """``logging.FileHandler`` appending to its file without following a symbolic link there. A file
    that cannot be written (a full disk) is said once on stderr, not with a traceback per record."""

    _failed = False

    def _open(self):
        return open_append_text(self.baseFilename)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self._failed:
            self._failed = True
            sys.stderr.write(f"warning: cannot write {self.baseFilename} ({sys.exc_info()[1]}); the log goes to "
                             "the console only\n")


class ProgressThrottle:
    """Lets a progress record through when at least ``every_s`` seconds (by the records' own
    times) have passed since the last one it let through: a console line every few seconds,
    whatever the number of iterations behind it."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.last: Optional[float] = None

    def __call__(self, record: logging.LogRecord) -> bool:
        if self.last is not None and record.created - self.last < self.every_s:
            return False
        self.last = record.created
        return True


_console_progress: Optional[ProgressThrottle] = None


def show_on_console_only(logger_names: Sequence[str], *, progress_every_s: Optional[float] = None) -> None:
    """From now on the console shows INFO records of ``logger_names`` (and their children),
    warnings of any logger, and with ``progress_every_s`` the progress lines of any logger (logged
    with ``extra=PROGRESS``), one per ``progress_every_s`` seconds at most (the first one after a line
    of ``logger_names`` at once); the log files keep everything. Empty: show every INFO record."""
    global _console_loggers, _console_progress
    _console_loggers = tuple(logger_names)
    _console_progress = ProgressThrottle(progress_every_s) if progress_every_s is not None else None


def add_log_file(path: str) -> logging.Handler:
    """Also write every record to ``path``, across the jobs that follow (``setup_logging`` keeps it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = NoFollowFileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def _console_filter(record: logging.LogRecord) -> bool:
    if not _console_loggers or record.levelno >= logging.WARNING:
        return True
    if any(record.name == name or record.name.startswith(name + ".") for name in _console_loggers):
        if _console_progress is not None:
            _console_progress.last = None  # a new stage: its first progress line shows at once
        return True
    return getattr(record, "progress", False) and _console_progress is not None and _console_progress(record)


@dataclass
class Average:
    """Running mean of a scalar."""

    total: float = 0.0
    count: int = 0

    def add(self, value: float, n: int = 1) -> None:
        self.total += value * n
        self.count += n

    @property
    def mean(self) -> float:
        return self.total / max(self.count, 1)


@dataclass
class SmoothedStepTime:
    """Exponential moving average of the step time over a whole run, the rate of the ETA: one slow
    step (workers starting, a validation, a checkpoint) moves it by ``weight`` of its excess only,
    and a new epoch starts from the run's rate instead of from nothing."""

    weight: float = 0.1
    seconds: Optional[float] = None

    def update(self, seconds: float) -> None:
        self.seconds = seconds if self.seconds is None else (1 - self.weight) * self.seconds + self.weight * seconds


@dataclass
class EpochMeter:
    """Per-step figures of one epoch: loss, lr, data wait, compute time, samples."""

    steps_total: int
    loss: Average = field(default_factory=Average)
    data_time: Average = field(default_factory=Average)
    compute_time: Average = field(default_factory=Average)
    samples: int = 0
    last_loss: float = float("nan")
    last_lr: float = 0.0
    decode_failures: int = 0
    skipped_steps: int = 0
    eta_rate: SmoothedStepTime = field(default_factory=SmoothedStepTime)

    def update(self, *, loss: float, lr: float, data_time: float, compute_time: float, samples: int) -> None:
        """Record one optimizer step (``samples`` counted over all ranks)."""
        self.loss.add(loss)
        self.data_time.add(data_time)
        self.compute_time.add(compute_time)
        self.samples += samples
        self.last_loss, self.last_lr = loss, lr
        self.eta_rate.update(data_time + compute_time)

    @property
    def step_time(self) -> float:
        return self.data_time.mean + self.compute_time.mean

    def progress_line(self, *, epoch: int, max_epoch: int, step: int) -> str:
        """``epoch e/E it i/I eta loss lr data compute throughput [bad files N] [skipped steps M]``
        for the log (ETA of the run; the counts of this epoch, shown when not 0)."""
        rate = self.eta_rate.seconds if self.eta_rate.seconds is not None else self.step_time
        remaining = (self.steps_total - step + (max_epoch - epoch - 1) * self.steps_total) * rate
        throughput = self.samples / max(self.data_time.total + self.compute_time.total, 1e-9)
        return (
            f"epoch {epoch + 1}/{max_epoch} it {step}/{self.steps_total} "
            f"eta {datetime.timedelta(seconds=int(remaining))} "
            f"loss {self.last_loss:.4f} ({self.loss.mean:.4f}) lr {self.last_lr:.3e} "
            f"data {self.data_time.mean:.3f}s compute {self.compute_time.mean:.3f}s "
            f"({100 * self.data_wait_fraction:.1f}% wait) {throughput:.1f} samples/s"
            f"{self._fault_counts()}"
        )

    def _fault_counts(self) -> str:
        """`` bad files N skipped steps M`` for the progress line (empty when both are 0)."""
        counts = [f"bad files {self.decode_failures}"] if self.decode_failures else []
        counts += [f"skipped steps {self.skipped_steps}"] if self.skipped_steps else []
        return "".join(f" {c}" for c in counts)

    def sums(self) -> Dict[str, float]:
        """The running sums the epoch's ``log.jsonl`` record is made of (timings aside), for a
        mid-epoch checkpoint."""
        return {"loss_total": self.loss.total, "loss_count": self.loss.count, "samples": self.samples,
                "decode_failures": self.decode_failures, "skipped_steps": self.skipped_steps}

    def restore(self, sums: Dict[str, float]) -> None:
        """Continue from ``sums()`` of a run stopped in this epoch, so the epoch's figures count
        its steps before the stop too."""
        self.loss = Average(total=sums["loss_total"], count=int(sums["loss_count"]))
        self.samples = int(sums["samples"])
        self.decode_failures = int(sums["decode_failures"])
        self.skipped_steps = int(sums["skipped_steps"])

    @property
    def data_wait_fraction(self) -> float:
        return self.data_time.mean / max(self.step_time, 1e-9)

    def summary(self) -> Dict[str, float]:
        """Epoch averages for the JSON log."""
        elapsed = self.data_time.total + self.compute_time.total
        return {
            "train_loss": self.loss.mean,
            "lr": self.last_lr,
            "data_time": self.data_time.mean,
            "compute_time": self.compute_time.mean,
            "data_wait_fraction": self.data_wait_fraction,
            "samples_per_s": self.samples / max(elapsed, 1e-9),
            "decode_failures": self.decode_failures,
            "skipped_steps": self.skipped_steps,
        }


class MetricsWriter:
    """Appends one JSON object per line to ``OUTPUT_DIR/log.jsonl``; mirrors scalars to TensorBoard."""

    def __init__(self, output_dir: str, *, tensorboard: bool):
        self.path = os.path.join(output_dir, JSON_LOG_FILE)
        self.tensorboard = _summary_writer(output_dir) if tensorboard else None

    def write(self, record: Dict[str, Any], *, step: int) -> None:
        self.write_event(record)
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()

    def write_event(self, record: Dict[str, Any]) -> None:
        """Append ``record`` to ``log.jsonl`` only (an event such as a rewind, not an epoch's scalars)."""
        with open_append_text(self.path) as f:
            f.write(("" if _ends_a_line(self.path) else "\n") + json.dumps(record) + "\n")

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _ends_a_line(path: str) -> bool:
    """Whether ``path`` is empty or ends with a newline (a record cut by a kill does not): an appended
    record must start on a line of its own."""
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _summary_writer(output_dir: str) -> Optional[Any]:
    """A TensorBoard ``SummaryWriter`` in ``OUTPUT_DIR/tensorboard``, or None if not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.info("TensorBoard is not installed: scalars go to %s only", JSON_LOG_FILE)
        return None
    return SummaryWriter(os.path.join(output_dir, TENSORBOARD_DIR))


def logged_progress(batches: Iterable, what: str, *, every_fraction: float = 0.1, unit: str = "batches") -> Iterator:
    """Yield from ``batches`` and log ``what i/n unit (elapsed, eta)`` about every tenth of the way,
    so a user waiting on an evaluation sees it move."""
    total = len(batches) if hasattr(batches, "__len__") else 0
    period = max(int(total * every_fraction), 1)
    start = time.perf_counter()
    for i, batch in enumerate(batches, 1):
        yield batch
        if i % period == 0 or i == total:
            elapsed = time.perf_counter() - start
            eta = elapsed / i * (total - i) if total else 0.0
            logger.info("%s %d/%s %s, %.1fs elapsed, eta %.1fs", what, i, total or "?", unit, elapsed, eta,
                        extra=PROGRESS)
