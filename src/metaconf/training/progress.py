"""What a training run prints: one progress line of its own instead of the libraries' raw log dicts and warnings.

On a terminal a tqdm bar (step, epoch, loss, it/s); elsewhere (logs, CI, pipes) one line per logging step. Only the
main process prints. `quiet_libraries()` hides the datasets / transformers progress bars and the libraries'
deprecation warnings while a trainer is built and run, and restores both afterwards.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

LIBRARIES = r"(transformers|trl|peft|accelerate|datasets|torch)(\.|$)"


def progress_line(
    name: str,
    step: int,
    max_steps: int,
    epoch: float | None,
    loss: float | None,
    learning_rate: float | None,
    rate: float | None,
) -> str:
    """'metaconf train single: step 10/60  epoch 0.50  loss 1.2345  lr 1.0e-04  3.21 it/s'."""
    parts = [f"metaconf train {name}: step {step}/{max_steps}"]
    if epoch is not None:
        parts.append(f"epoch {epoch:.2f}")
    if loss is not None:
        parts.append(f"loss {loss:.4f}")
    if learning_rate is not None:
        parts.append(f"lr {learning_rate:.1e}")
    if rate is not None:
        parts.append(f"{rate:.2f} it/s")
    return "  ".join(parts)


def progress_callback(name: str, stream: TextIO | None = None) -> Any:
    """A TrainerCallback printing the project's progress (replaces transformers' Printer/ProgressCallback)."""
    from transformers import TrainerCallback

    class TrainingProgress(TrainerCallback):
        def __init__(self) -> None:
            self.stream = stream or sys.stderr
            self.bar: Any = None
            self.last = (0, time.monotonic())
            self.start = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if not state.is_world_process_zero:
                return
            self.start = time.monotonic()
            self.last = (state.global_step, self.start)
            if self.stream.isatty():
                from tqdm.auto import tqdm

                self.bar = tqdm(
                    total=state.max_steps,
                    initial=state.global_step,
                    desc=f"train {name}",
                    unit="step",
                    file=self.stream,
                    dynamic_ncols=True,
                )

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
            if not state.is_world_process_zero or not logs or "loss" not in logs:
                return
            now = time.monotonic()
            steps, since = state.global_step - self.last[0], now - self.last[1]
            self.last = (state.global_step, now)
            loss, lr = float(logs["loss"]), logs.get("learning_rate")
            if self.bar is not None:
                self.bar.set_postfix(epoch=f"{state.epoch or 0:.2f}", loss=f"{loss:.4f}", refresh=False)
                return
            print(
                progress_line(
                    name,
                    state.global_step,
                    state.max_steps,
                    state.epoch,
                    loss,
                    None if lr is None else float(lr),
                    steps / since if since > 0 else None,
                ),
                file=self.stream,
                flush=True,
            )

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
            if not state.is_world_process_zero:
                return
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            print(
                f"metaconf train {name}: done, {state.global_step} steps in {time.monotonic() - self.start:.1f} s",
                file=self.stream,
                flush=True,
            )

    return TrainingProgress()


def use_own_progress(trainer: Any, name: str) -> Any:
    """Swap transformers' printing callbacks (raw `{'loss': ...}` dicts, its own bar) for `progress_callback`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(progress_callback(name))
    return trainer


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Hide library progress bars (tokenising, loading weights) and their Future/Deprecation warnings."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets_off = datasets.are_progress_bars_disabled()
    hf_off = not hf_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", category=category, module=LIBRARIES)
            yield
    finally:
        if not datasets_off:
            datasets.enable_progress_bars()
        if not hf_off:
            hf_logging.enable_progress_bar()
