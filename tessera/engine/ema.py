"""An exponential moving average of a module's weights: parameters averaged, buffers copied."""

from __future__ import annotations

import copy

import torch


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.module = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        for e, p in zip(self.module.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p, 1 - self.decay)
        for e, b in zip(self.module.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
