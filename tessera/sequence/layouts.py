"""Tasks as layouts of the one token stream.

Text-to-image:  <pad>.. text <boi> image tokens (in generation order) <eoi>
Text-to-video:  the same, with a clip's code frames as one image whose tokens carry their frame
Class-to-image: the same, with the class name as a one-token text.
Image-to-text:  <pad>.. question <boi> image tokens (raster) <eoi> <sep> answer <eos> <pad>..
                (captioning, question answering and judging differ only in the question)
Conditioned:    <pad>.. text <boi> condition (raster) <eoi> <boi> image tokens (in generation order) <eoi>
                (any-to-image: a segmentation or edge map, or a source image with an edit instruction; the
                condition sits on the same grid cells as the image it conditions)
Text is left-padded to a fixed length, so every example of a task has one length and the image starts at
one place; the unconditional prompt (for classifier-free guidance) is all <pad>.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.errors import InputError
from tessera.sequence.ids import IMAGE, TEXT, IdSpace

NO_POS = -1  # the position of a token that is not an image token
CONTENT, TEXT_PART = 0, 1  # parts of a sequence for disentangled attention; visual condition k is part 2 + k


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T) ids in the one id space
    pos: torch.Tensor  # (B, T, 3) (frame, row, col) of image tokens, NO_POS elsewhere
    slot: torch.Tensor  # (B, T) TEXT or IMAGE: which ids may stand at each position
    loss: torch.Tensor  # (B, T) bool: tokens the model is trained to predict
    part: torch.Tensor | None = None  # (B, T) CONTENT, TEXT_PART or a visual condition's part; None: all CONTENT

    def parts(self) -> torch.Tensor:
        return torch.zeros_like(self.ids) if self.part is None else self.part

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, own positions, target positions) of the inputs: token t is told where token t+1 goes."""
        return self.ids[:, :-1], self.pos[:, :-1], self.pos[:, 1:]

    def targets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, slots, loss mask) of the tokens each input position predicts."""
        return self.ids[:, 1:], self.slot[:, 1:], self.loss[:, 1:]

    def rows(self, index) -> Batch:
        """The rows `index` (a slice, indices or a bool mask) of every field."""
        part = None if self.part is None else self.part[index]
        return Batch(self.ids[index], self.pos[index], self.slot[index], self.loss[index], part)


def pad_text(space: IdSpace, texts: list[list[int]], length: int, device=None) -> torch.Tensor:
    """Text-tokenizer ids -> (B, length) sequence ids, left-padded with <pad>."""
    out = torch.full((len(texts), length), space.special("<pad>"), dtype=torch.long)
    for i, ids in enumerate(texts):
        if len(ids) > length:
            raise InputError(f"the text has {len(ids)} tokens; this model reads at most {length}")
        if ids:
            out[i, length - len(ids) :] = torch.tensor(space.text(ids))
    return out.to(device)


def unconditional(space: IdSpace, text: torch.Tensor) -> torch.Tensor:
    """The empty prompt of the same shape: all <pad>."""
    return torch.full_like(text, space.special("<pad>"))


def prefix(space: IdSpace, text: torch.Tensor) -> torch.Tensor:
    """(B, L) text -> (B, L + 1) prompt ending in <boi>, which a generator continues with image tokens (the text
    itself in a space without <boi>)."""
    if not space.boi:
        return text
    boi = torch.full_like(text[:, :1], space.special("<boi>"))
    return torch.cat([text, boi], dim=1)


def grid_positions(order: torch.Tensor, grid: tuple[int, ...], frame: int = 0) -> torch.Tensor:
    """(B, N) raster indices in generation order over a grid (h, w) or a clip's (t, h, w) -> (B, N, 3) (frame,
    row, col); frames count from `frame`."""
    h, w = grid[-2:]
    return torch.stack([frame + order // (h * w), order % (h * w) // w, order % w], dim=-1)


def t2i_length(text_len: int, n_image: int) -> int:
    """Tokens in a text-to-image sequence: text, <boi>, the image, <eoi>."""
    return text_len + n_image + 2


def i2t_length(question_len: int, n_image: int, answer_len: int) -> int:
    """Tokens in an image-to-text sequence: question, <boi> image <eoi> <sep>, answer, <eos>."""
    return question_len + n_image + 3 + answer_len + 1


@dataclass
class Conditions:
    """Visual conditions of a conditioned layout: their codes, the frame each sits in, and the drawn image's frame
    (a map or a source image and the image drawn from it share frame 0; earlier frames of a clip are frames
    0..K-1 and the drawn one is frame K)."""

    codes: torch.Tensor  # (B, K, h, w)
    frames: tuple[int, ...] | None = None  # one per condition; None: all 0
    drawn: int = 0

    def frame(self, k: int) -> int:
        return 0 if self.frames is None else self.frames[k]

    def rows(self, index) -> Conditions:
        return Conditions(self.codes[index], self.frames, self.drawn)

    def to(self, device) -> Conditions:
        return Conditions(self.codes.to(device), self.frames, self.drawn)

    @classmethod
    def of(cls, x: Conditions | torch.Tensor) -> Conditions:
        """Conditions as given, or codes (B, K, h, w) of pictures the drawn image shares frame 0 with."""
        return x if isinstance(x, Conditions) else cls(x)

    @classmethod
    def clip(cls, codes: torch.Tensor) -> Conditions:
        """(B, K, h, w) codes of K earlier frames: the next frame is drawn."""
        k = codes.shape[1]
        return cls(codes, tuple(range(k)), k)


def conditioned_length(text_len: int, n_image: int, n_conditions: int) -> int:
    """Tokens in a conditioned sequence: text, each condition with its <boi>/<eoi>, then the drawn image's."""
    return text_len + (n_conditions + 1) * (n_image + 2)


def text_to_image(
    space: IdSpace, text: torch.Tensor, codes: torch.Tensor, order: torch.Tensor, frame: int = 0
) -> Batch:
    """text (B, L) sequence ids, codes (B, h, w) or a clip's (B, t, h, w), order (B, N) raster indices -> the
    training Batch; the loss falls on the image tokens in the image slots, whose frames count from `frame`."""
    head = prefix(space, text)
    flat = codes.flatten(1)  # (B, N)
    image = space.image(flat.gather(1, order))  # (B, N) in generation order
    eoi = torch.full_like(text[:, :1], space.special("<eoi>"))
    ids = torch.cat([head, image, eoi], dim=1)  # (B, L + N + 2)
    pos = torch.full((*ids.shape, 3), NO_POS, dtype=torch.long, device=ids.device)
    pos[:, head.shape[1] : -1] = grid_positions(order, tuple(codes.shape[1:]), frame)
    slot = torch.full_like(ids, TEXT)
    slot[:, head.shape[1] : -1] = IMAGE
    loss = slot == IMAGE
    return Batch(ids, pos, slot, loss)


def pad_answer(space: IdSpace, answers: list[list[int]], length: int, device=None) -> torch.Tensor:
    """Text-tokenizer ids -> (B, length + 1) sequence ids: the answer, <eos>, then <pad> on the right."""
    out = torch.full((len(answers), length + 1), space.special("<pad>"), dtype=torch.long)
    for i, ids in enumerate(answers):
        if len(ids) > length:
            raise InputError(f"the answer has {len(ids)} tokens; this model writes at most {length}")
        out[i, : len(ids) + 1] = torch.tensor([*space.text(ids), space.special("<eos>")])
    return out.to(device)


def image_prefix(space: IdSpace, question: torch.Tensor, codes: torch.Tensor) -> Batch:
    """question (B, Q) sequence ids, codes (B, h, w) -> the prompt `question <boi> image <eoi> <sep>` (no loss)."""
    b, q = question.shape
    order = torch.arange(codes[0].numel(), device=codes.device).expand(b, -1)  # raster
    image = text_to_image(space, question, codes, order)
    sep = torch.full_like(question[:, :1], space.special("<sep>"))
    ids = torch.cat([image.ids, sep], dim=1)  # (B, Q + N + 3)
    pos = torch.cat([image.pos, torch.full_like(image.pos[:, :1], NO_POS)], dim=1)
    slot = torch.cat([image.slot, torch.full_like(sep, TEXT)], dim=1)
    return Batch(ids, pos, slot, torch.zeros_like(ids, dtype=torch.bool))


def image_to_text(space: IdSpace, question: torch.Tensor, codes: torch.Tensor, answer: torch.Tensor) -> Batch:
    """question (B, Q), codes (B, h, w), answer (B, A) from `pad_answer` -> the training Batch; the loss falls on
    the answer and its <eos>."""
    head = image_prefix(space, question, codes)
    ids = torch.cat([head.ids, answer], dim=1)
    pos = torch.cat([head.pos, torch.full((*answer.shape, 3), NO_POS, dtype=torch.long, device=ids.device)], dim=1)
    slot = torch.cat([head.slot, torch.full_like(answer, TEXT)], dim=1)
    loss = torch.cat([head.loss, answer != space.special("<pad>")], dim=1)
    return Batch(ids, pos, slot, loss)


def stack(batches: list[Batch], space: IdSpace) -> Batch:
    """One Batch of several (tasks of different lengths): each right-padded with <pad> and no loss."""
    t = max(b.ids.shape[1] for b in batches)

    def right(x: torch.Tensor, value: int) -> torch.Tensor:
        fill = torch.full((x.shape[0], t - x.shape[1], *x.shape[2:]), value, dtype=x.dtype, device=x.device)
        return torch.cat([x, fill], dim=1)

    return Batch(
        torch.cat([right(b.ids, space.special("<pad>")) for b in batches]),
        torch.cat([right(b.pos, NO_POS) for b in batches]),
        torch.cat([right(b.slot, TEXT) for b in batches]),
        torch.cat([right(b.loss, False) for b in batches]),
        None if all(b.part is None for b in batches) else torch.cat([right(b.parts(), CONTENT) for b in batches]),
    )


def blank(
    space: IdSpace, batch: Batch, parts: tuple[int, ...] | None = None, rows=None, keep_images: bool = False
) -> Batch:
    """The batch with the tokens of `parts` (None: all) made <pad> with no position, in every row or in `rows`
    ((B,) bool), image tokens kept with `keep_images`: a condition dropped, as training drops it for guidance (a
    thinking chain's text dropped, its bands kept). Lengths and parts stay, so blanked rows stack with the
    others."""
    gone = torch.ones_like(batch.ids, dtype=torch.bool)
    if parts is not None:
        gone = torch.isin(batch.parts(), torch.tensor(parts, device=batch.ids.device))
    if keep_images:
        gone = gone & (batch.ids < space.image_start)
    if rows is not None:
        gone = gone & rows[:, None]
    return Batch(
        batch.ids.masked_fill(gone, space.special("<pad>")),
        batch.pos.masked_fill(gone[..., None], NO_POS),
        batch.slot.masked_fill(gone, TEXT),
        batch.loss & ~gone,
        batch.part,
    )


def condition_prompt(space: IdSpace, text: torch.Tensor, conditions: Conditions | torch.Tensor) -> Batch:
    """text (B, L), conditions (codes (B, K, h, w)) -> `text <boi> condition 1 <eoi> .. <boi> condition K <eoi>`,
    the conditions in raster order on the grid cells (and in the frames) of the image they condition (no loss)."""
    conditions = Conditions.of(conditions)
    b, k, h, w = conditions.codes.shape
    boi = torch.full_like(text[:, :1], space.special("<boi>"))
    eoi = torch.full_like(text[:, :1], space.special("<eoi>"))
    none = torch.full((b, 1, 3), NO_POS, dtype=torch.long, device=text.device)
    raster = torch.arange(h * w, device=text.device).expand(b, -1)
    ids, pos = [text], [torch.full((*text.shape, 3), NO_POS, dtype=torch.long, device=text.device)]
    part = [torch.full_like(text, TEXT_PART)]
    for i in range(k):
        ids += [boi, space.image(conditions.codes[:, i].flatten(1)), eoi]
        pos += [none, grid_positions(raster, (h, w), conditions.frame(i)), none]
        part.append(torch.full((b, h * w + 2), 2 + i, dtype=torch.long, device=text.device))
    ids_t, part_t = torch.cat(ids, 1), torch.cat(part, 1)
    slot = torch.full_like(ids_t, TEXT)
    slot[ids_t >= space.image_start] = IMAGE
    return Batch(ids_t, torch.cat(pos, 1), slot, torch.zeros_like(ids_t, dtype=torch.bool), part_t)


def conditioned(
    space: IdSpace, text: torch.Tensor, conditions: Conditions | torch.Tensor, codes: torch.Tensor, order
) -> Batch:
    """text (B, L), conditions (codes (B, K, h, w)), codes (B, h, w), order (B, h*w) -> the training Batch: the
    loss falls on the drawn image alone, never on a condition."""
    conditions = Conditions.of(conditions)
    head = condition_prompt(space, text, conditions)
    image = text_to_image(space, head.ids, codes, order, conditions.drawn)  # the prompt stands where a text would
    image.pos[:, : head.ids.shape[1]] = head.pos
    image.slot[:, : head.ids.shape[1]] = head.slot
    image.part = torch.cat([head.part, torch.full_like(image.ids[:, head.ids.shape[1] :], CONTENT)], 1)
    return image
