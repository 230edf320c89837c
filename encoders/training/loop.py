"""The optimisation loop the trainers share (hash encoders, version embedding, segment embedding).

Each trainer builds its own optimizer and learning-rate schedule and draws its own batches; ``run_steps``
does what they have in common, in the order that their shipped weights were trained with.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def run_steps(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int,
              batch_loss: Callable[[int], torch.Tensor],
              report: Callable[[int, list[float]], None] | None = None) -> list[float]:
    """Run ``steps`` optimisation steps and return the loss of each (Python floats).

    Each step: ``batch_loss(step)`` (``step`` from 0) draws a batch and returns its loss; the gradients are
    zeroed, the loss back-propagated, then the optimizer and the scheduler step. ``report(done, losses)`` is
    called after every step (``done`` steps so far), for the trainer's progress lines.
    """
    losses: list[float] = []
    for step in range(steps):
        loss = batch_loss(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if report is not None:
            report(step + 1, losses)
    return losses
