"""The one id space of every sequence: [specials | text | image]."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPECIALS = ("<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<think>", "</think>", "<sep>")
TEXT, IMAGE = 0, 1  # slot kinds: what a position may emit


@dataclass(frozen=True)
class IdSpace:
    n_text: int
    n_image: int
    boi: bool = True  # a <boi> between a prompt and the image drawn after it (LlamaGen's models have none)

    @property
    def text_start(self) -> int:
        return len(SPECIALS)

    @property
    def image_start(self) -> int:
        return self.text_start + self.n_text

    @property
    def size(self) -> int:
        return self.image_start + self.n_image

    def special(self, name: str) -> int:
        return SPECIALS.index(name)

    def text(self, ids: list[int]) -> list[int]:
        return [self.text_start + i for i in ids]

    def text_ids(self, ids: list[int]) -> list[int]:
        """Sequence ids back to text-tokenizer ids (specials and image ids dropped)."""
        return [i - self.text_start for i in ids if self.text_start <= i < self.image_start]

    def image(self, codes: torch.Tensor) -> torch.Tensor:
        return codes + self.image_start

    def codes(self, ids: torch.Tensor) -> torch.Tensor:
        return ids - self.image_start

    def allowed(self, slot: int, device=None) -> torch.Tensor:
        """(size,) bool: the ids a slot may emit. Image slots emit image codes; text slots text and specials."""
        mask = torch.zeros(self.size, dtype=torch.bool, device=device)
        if slot == IMAGE:
            mask[self.image_start :] = True
        else:
            mask[: self.image_start] = True
            mask[self.special("<pad>")] = False
        return mask
