"""Where training numbers go: train_log.jsonl, the console, TensorBoard/W&B, loss_curve.png.

Only rank 0 logs. One JSON line per logging step: step, loss (token-weighted mean over the
steps since the last line), lr, tokens_per_s (real, non-pad tokens, all ranks),
trained_token_fraction (trained / real tokens) and epoch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastchat_lite.errors import MissingExtraError
from fastchat_lite.io import atomic_write

LOG_NAME = "train_log.jsonl"
CURVE_NAME = "loss_curve.png"


class Window:
    """Sums since the last log line."""

    def __init__(self) -> None:
        self.loss_sum = self.trained = self.real = self.seconds = 0.0

    def add(self, loss_sum: float, trained: int, real: int, seconds: float) -> None:
        self.loss_sum += loss_sum
        self.trained += trained
        self.real += real
        self.seconds += seconds

    def record(self, step: int, lr: float, epoch: float) -> dict[str, Any]:
        return {
            "step": step,
            "loss": self.loss_sum / max(self.trained, 1),
            "lr": lr,
            "tokens_per_s": self.real / max(self.seconds, 1e-9),
            "trained_token_fraction": self.trained / max(self.real, 1),
            "epoch": round(epoch, 4),
        }


class TrainLogger:
    def __init__(self, output_dir: Path, report_to: str, config: dict[str, Any], enabled: bool):
        self.path = output_dir / LOG_NAME
        self.enabled = enabled
        self.sink: Any = None
        if not enabled:
            return
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise MissingExtraError(
                    "report_to=tensorboard needs tensorboard: pip install 'fastchat-lite[train]'"
                ) from None
            self.sink = SummaryWriter(str(output_dir / "runs"))
        elif report_to == "wandb":
            try:
                import wandb
            except ImportError:
                raise MissingExtraError("report_to=wandb needs `pip install wandb`") from None
            self.sink = wandb.init(config=config, dir=str(output_dir), resume="allow")

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint (they will be logged again)."""
        if not self.enabled or not self.path.is_file():
            return
        lines = [
            line
            for line in self.path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        with atomic_write(self.path) as handle:
            handle.writelines(line + "\n" for line in lines)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.sink is not None and hasattr(self.sink, "add_scalar"):
            for key in ("loss", "lr", "tokens_per_s", "trained_token_fraction"):
                self.sink.add_scalar(f"train/{key}", record[key], record["step"])
        elif self.sink is not None:
            self.sink.log({f"train/{k}": v for k, v in record.items()}, step=record["step"])

    def close(self) -> None:
        if self.sink is not None:
            getattr(self.sink, "close", getattr(self.sink, "finish", lambda: None))()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def plot_loss_curve(output_dir: Path) -> Path | None:
    """loss_curve.png from train_log.jsonl (matplotlib, Agg backend: no display needed)."""
    records = read_log(output_dir / LOG_NAME)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over trained tokens)")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    out = output_dir / CURVE_NAME
    with atomic_write(out, "wb") as handle:
        fig.savefig(handle, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
