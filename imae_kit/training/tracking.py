"""TensorBoard (``train.tensorboard = true``): every logged step's terms and the evaluation, beside metrics.jsonl.

The events go to RUN_DIR/tensorboard (``tensorboard --logdir runs/`` shows every run, a sweep's points each
as its own run): the loss, the learning rate, each term's raw value and weighted contribution, the
``train.eval_every`` curves, and after the evaluation its headline numbers and figures. The ``tensorboard``
package is an optional extra: ``pip install -e '.[tensorboard]'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from imae_kit.errors import RunError
from imae_kit.params import is_number
from imae_kit.report import headline

TENSORBOARD_DIR = "tensorboard"
INSTALL = "pip install -e '.[tensorboard]'"


def summary_writer_class() -> type:
    """torch's SummaryWriter, or a RunError naming the install command when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # lazy: an optional dependency
    except ImportError as exc:
        raise RunError(f"train.tensorboard = true needs the tensorboard package ({exc}); install it with: "
                       f"{INSTALL}, or drop the option") from None
    return SummaryWriter


class TensorBoardLog:
    """One run's event file; opened on first use."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / TENSORBOARD_DIR
        self._writer_class = summary_writer_class()
        self._writer = None

    @property
    def writer(self):
        """The SummaryWriter (created on first use)."""
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.path))
        return self._writer

    def log_step(self, record: dict[str, Any]) -> None:
        """One metrics.jsonl record: loss, lr, each term's value and contribution, the eval curves."""
        step = int(record["step"])
        self.writer.add_scalar("loss", record["loss"], step)
        self.writer.add_scalar("lr", record["lr"], step)
        for label, term in record.get("terms", {}).items():
            self.writer.add_scalar(f"terms/{label}/value", term["value"], step)
            self.writer.add_scalar(f"terms/{label}/contribution", term["contribution"], step)
        for key, value in (record.get("eval") or {}).items():
            if is_number(value):
                self.writer.add_scalar(f"eval_every/{key}", value, step)
        self.writer.flush()

    def log_evaluation(self, evaluation: dict[str, Any], step: int, run_dir: Path) -> None:
        """The evaluation's headline numbers (scalars) and its figures (images) at the run's last step."""
        from PIL import Image  # lazy: only when figures are logged

        for name, value in headline(evaluation):
            if is_number(value):
                self.writer.add_scalar(f"evaluation/{name}", value, step)
        for key, rel in (evaluation.get("figures") or {}).items():
            path = Path(run_dir) / rel
            if path.is_file():
                image = np.asarray(Image.open(path).convert("RGB"))
                self.writer.add_image(f"figures/{key}", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
