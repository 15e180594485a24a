"""The loss curve of a training run (SVI, adversarial), as a PNG written when training
stops (also when it fails). The progress bar is the application layer's
(compiler/app/progress.py): the engines only call back."""
from __future__ import annotations

import io
from typing import Any

from runtime.files import write_atomic


def write_loss_plot(losses: list[float], path: str, items: int | None = None,
                    ylabel: str | None = None) -> None:
    """The loss per step (by default the negative ELBO, per item of the plate when there
    is one), with a moving average, saved atomically."""
    import matplotlib  # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    y = np.asarray(losses, dtype=float) / (items or 1)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(y) + 1), y, lw=0.6, alpha=0.5, label="loss per step")
    width = max(1, len(y) // 50)
    if width > 1 and len(y) > width:
        smooth = np.convolve(y, np.ones(width) / width, mode="valid")
        ax.plot(np.arange(width, len(y) + 1), smooth, lw=1.5, label=f"mean of {width}")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or "-ELBO" + (" per item" if items else ""))
    ax.legend()
    fig.tight_layout()
    buffer: Any = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
