"""A LLaMA-style decoder over the one id space, told where each image token sits and where the next one goes.

RMSNorm, SwiGLU, rotary positions, grouped-query attention through `scaled_dot_product_attention`, and a
zero-initialised output head. Rotary positions count the stream index (`rope: stream`), or, as LlamaGen's do
(`rope: grid`), an image token's row and column on two halves of each head's rotary pairs, with the query and
key of every other token (LlamaGen's class token) multiplied by zero. Image tokens add learned embeddings of
their own (frame, row, col) and of the target position, the cell the next token fills, so one model draws
in raster, random or any other order. Optionally (code_dim), the image rows of the input and output tables
also carry a learned projection of each code's vector in the visual tokenizer, so codes that look alike start
alike: what the model learns of one red patch it knows of every red patch. Optionally (text_pool), every token
that is not text adds a learned projection of the mean embedding of the text tokens before it: an image token
then holds the prompt's words from the first layer, without first learning to attend to them. A mean of words
cannot say which colour goes with which shape; with text_pool_pairs such a token also adds a projection of the mean
product of each two adjacent words' normalised embeddings, so "red"·"circle" and "blue"·"square" reach it as pairs.
Optionally (image_pool), every token after an image that is not an image token adds a learned projection of the
RMS-normalised mean embedding of the image tokens before it: a bag of the image's codes. A code is a patch of one
colour and one piece of outline, so the bag tells which colours come with which shapes, which attention that starts
out uniform over the image averages away (bench/read_learning.py). Optionally (drawn_pool: codes), every image token
adds a learned projection of the running maximum, feature by feature, of the input embeddings of the image tokens up
to it: which kinds of patch have been drawn so far, however few among the background, so the second object of "a
circle and a square" can know that the first was a circle. With `drawn_pool: masks` (mask x colour codes) each drawn
code enters the pool as its mask in the first colour: what outline has been drawn, not in which colour.

With `dca` (OmniGen-AR's disentangled causal attention), each condition part of a sequence (the text, a
visual condition) attends only within itself, while content attends causally to everything before it: a
condition is read the same whatever the other conditions say, so no condition leaks into how another is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tessera.config import at_least
from tessera.errors import ConfigError
from tessera.sequence.ids import IMAGE, SPECIALS, TEXT, IdSpace

NO_IMAGE = -1e4  # drawn_pool's running maximum before any image token: below any embedding, within bf16's range


@dataclass
class ModelConfig:
    vocab_size: int = 0  # set from the id space
    dim: int = 256
    n_layer: int = 4
    n_head: int = 8
    n_kv_head: int = 4  # grouped-query attention: n_head / n_kv_head query heads share a key/value head
    ffn_multiple: int = 64  # SwiGLU hidden width: 8/3 dim rounded up to this
    rope_theta: float = 10000.0
    rope: str = "stream"  # rotary positions over the stream index, or "grid": an image token's (row, col)
    max_seq_len: int = 512
    max_grid: int = 32  # rows and columns an image may have, in tokens
    max_frames: int = 16
    dropout: float = 0.0
    image_codes: int = 0  # the last image_codes ids are image codes; with code_dim, embedded from their vectors
    code_dim: int = 0  # width of the visual tokenizer's code vectors (0: image codes are free embeddings alone)
    dca: bool = False  # disentangled causal attention between condition parts (needs the layouts' segments)
    text_pool: bool = False  # every other token adds a projection of the mean embedding of the text before it
    text_pool_pairs: bool = False  # and of the mean product of each two adjacent words' normalised embeddings
    image_pool: bool = False  # every non-image token after an image adds a projection of its codes' mean embedding
    drawn_pool: str = ""  # codes | masks: every image token adds a projection of the running max of the drawn codes'
    # input embeddings (masks: each code's mask in the first colour); "" for none
    read_both_ways: bool = False  # the image a reading row is given (one holding <sep>) attends to itself both ways
    colour_head: bool = False  # image codes are mask x colours + colour: the head scores a mask, then its colour
    code_colours: int = 0  # the colours of such codes (set from the visual tokenizer)

    def validate(self) -> None:
        at_least(self, 1, "dim", "n_layer", "n_head", "n_kv_head", "ffn_multiple", "max_seq_len", "max_grid",
                 "max_frames", prefix="model.")  # fmt: skip
        if self.vocab_size <= 0:
            raise ConfigError("model.vocab_size must be set (it comes from the text and image vocabularies)")
        if self.dim % self.n_head or self.n_head % self.n_kv_head:
            raise ConfigError("model.dim must divide by model.n_head, and model.n_head by model.n_kv_head")
        if self.code_dim and not 0 < self.image_codes <= self.vocab_size:
            raise ConfigError("model.code_dim needs model.image_codes, the image ids at the end of the vocabulary")
        if (self.dim // self.n_head) % 2:
            raise ConfigError("model.dim / model.n_head must be even (rotary positions rotate pairs)")
        if self.rope not in ("stream", "grid"):
            raise ConfigError(f"model.rope must be stream or grid, got {self.rope!r}")
        if self.rope == "grid" and (self.dim // self.n_head) % 4:
            raise ConfigError("model.rope=grid needs model.dim / model.n_head divisible by 4 (rows and columns)")
        if self.text_pool_pairs and not self.text_pool:
            raise ConfigError("model.text_pool_pairs needs model.text_pool")
        if self.colour_head and not (self.code_colours and self.image_codes % self.code_colours == 0):
            raise ConfigError(
                "model.colour_head needs mask x colour image codes (a tokenizer with tokenizer.patch.colours > 0, "
                "as --preset masks trains), or model.colour_head=false"
            )
        if self.drawn_pool not in ("", "codes", "masks"):
            raise ConfigError(f"model.drawn_pool must be codes, masks or empty, got {self.drawn_pool!r}")
        if self.drawn_pool == "masks" and not self.colour_head:
            raise ConfigError("model.drawn_pool=masks needs mask x colour codes and model.colour_head=true")
        for flag in ("read_both_ways", "image_pool", "drawn_pool"):
            if getattr(self, flag) and not self.image_codes:
                raise ConfigError(f"model.{flag} needs model.image_codes, the image ids at the end of the vocabulary")


class KVCache:
    """Preallocated keys and values, (layers, B, n_kv_head, max_len, head_dim) each."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (cfg.n_layer, batch, cfg.n_kv_head, max_len, cfg.dim // cfg.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # the pools' running sums with their counts, (pools, B, max_len, dim + 1): text_pool's of the words'
        # embeddings, text_pool_pairs' of adjacent words' products, image_pool's of the image tokens' embeddings;
        # and each token's normalised word embedding with a flag that it is a word, (B, max_len, dim + 1), for the
        # pair it makes with the next token
        pools = cfg.text_pool + cfg.text_pool_pairs + cfg.image_pool
        self.sums = torch.zeros(pools, batch, max_len, cfg.dim + 1, device=device, dtype=dtype) if pools else None
        words = (batch, max_len, cfg.dim + 1)
        self.words = torch.zeros(words, device=device, dtype=dtype) if cfg.text_pool_pairs else None
        # drawn_pool's running maximum of the image tokens' embeddings, (B, max_len, dim)
        self.drawn = torch.zeros(batch, max_len, cfg.dim, device=device, dtype=dtype) if cfg.drawn_pool else None
        self.tables: tuple[torch.Tensor | None, torch.Tensor] | None = None  # the model's, once (Transformer.tables)

    def update(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, kv, T, hd) keys/values at [start, start+T); return all keys/values so far."""
        end = start + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(max_len, head_dim/2) cosines and sines of the rotary angles."""
    freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angle = torch.outer(torch.arange(max_len, dtype=torch.float32), freq)
    return angle.cos(), angle.sin()


def grid_angles(pos: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 3) positions -> (B, 1, T, head_dim/2) cosines and sines: the first half of the pairs turn with the
    row, the second with the column, at LlamaGen's frequencies; a token off the grid gets zeros, as LlamaGen's
    class token does."""
    half = head_dim // 2
    freq = theta ** (-torch.arange(0, half, 2, dtype=torch.float32, device=pos.device) / half)  # (hd/4,)
    row, col = pos[..., 1:2].float(), pos[..., 2:3].float()  # (B, T, 1)
    angle = torch.cat([row * freq, col * freq], dim=-1)  # (B, T, hd/2)
    on = (pos[..., 1:2] >= 0).float()
    return (angle.cos() * on)[:, None], (angle.sin() * on)[:, None]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hd) by (T, hd/2) or (B, 1, T, hd/2) angles, pairing channel i with i + hd/2."""
    a, b = x.float().chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).type_as(x)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.dim // cfg.n_head
        self.wq = nn.Linear(cfg.dim, cfg.n_head * self.head_dim, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_head * self.head_dim, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_head * self.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_head * self.head_dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x, cos, sin, cache: KVCache | None, layer: int, start: int, mask=None) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.wk(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, kv, T, hd)
        v = self.wv(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, start, k, v)  # (B, kv, start + T, hd), in the cache's dtype
            q = q.to(k.dtype)
        groups = self.n_head // self.n_kv_head
        if t == 1:  # one new token: the g query heads of each KV head attend as g queries, no key or value copied
            y = F.scaled_dot_product_attention(q.view(b, self.n_kv_head, groups, self.head_dim), k, v)  # (B, kv, g, hd)
            return self.wo(y.reshape(b, 1, -1).to(x.dtype))
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        if mask is None and k.shape[2] > t:  # a chunk after cached tokens: query i sees keys up to start + i
            mask = torch.arange(k.shape[2], device=x.device) <= start + torch.arange(t, device=x.device)[:, None]
        causal = mask is None
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=drop)
        return self.wo(y.transpose(1, 2).reshape(b, t, -1).to(x.dtype))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = -(-int(8 * cfg.dim / 3) // cfg.ffn_multiple) * cfg.ffn_multiple
        self.w1 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w3 = nn.Linear(cfg.dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attention_norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.attention = Attention(cfg)
        self.ffn_norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        self.feed_forward = FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, cache, layer, start, mask=None):
        x = x + self.drop(self.attention(self.attention_norm(x), cos, sin, cache, layer, start, mask))
        return x + self.drop(self.feed_forward(self.ffn_norm(x)))


def dca_mask(segment: torch.Tensor) -> torch.Tensor:
    """(B, T) parts -> (B, 1, T, T) bool: causal, and a condition token (part > 0) sees only its own part."""
    t = segment.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segment.device).tril()
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    return (causal & (same | (segment == 0)[:, :, None]))[:, None]


class GridEmbedding(nn.Module):
    """Sum of learned frame, row and column embeddings; NO_POS (-1) maps to a learned 'no position' row."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.limits = (cfg.max_frames, cfg.max_grid, cfg.max_grid)
        self.tables = nn.ModuleList(nn.Embedding(n + 1, cfg.dim) for n in self.limits)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:  # (B, T, 3) -> (B, T, D)
        out = 0
        for axis, (table, n) in enumerate(zip(self.tables, self.limits, strict=True)):
            p = pos[..., axis]
            out = out + table(torch.where(p < 0, n, p))
        return out


def target_scores(
    logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, V) logits, (M,) targets and (M, V) allowed ids -> (M,) each target's log-probability among its allowed
    ids and (M,) whether it is the likeliest of them."""
    logits = logits.masked_fill(~allowed, float("-inf"))
    return logits.log_softmax(-1).gather(1, targets[:, None])[:, 0], logits.argmax(-1) == targets


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.here = GridEmbedding(cfg)  # where this token sits
        self.next = GridEmbedding(cfg)  # where the token to predict goes (target-aware)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.dim, eps=1e-5)
        masks = cfg.image_codes // cfg.code_colours if cfg.colour_head else cfg.image_codes
        self.output = nn.Linear(cfg.dim, cfg.vocab_size - cfg.image_codes + masks, bias=False)  # a row per mask
        self.colour_out = self.colour_given_mask = None
        if cfg.colour_head:
            self.colour_out = nn.Linear(cfg.dim, cfg.code_colours, bias=False)
            self.colour_given_mask = nn.Parameter(torch.zeros(masks, cfg.code_colours))  # (masks, colours)
        self.code_in = self.code_out = None
        if cfg.code_dim:
            self.register_buffer("code_vectors", torch.zeros(cfg.image_codes, cfg.code_dim))  # set by the trainer
            self.code_in = nn.Linear(cfg.code_dim, cfg.dim, bias=False)
            self.code_out = nn.Linear(cfg.code_dim, cfg.dim, bias=False)
        self.text_proj = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.text_pool else None
        self.pair_proj = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.text_pool_pairs else None
        self.image_proj = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.image_pool else None
        self.drawn_proj = nn.Linear(cfg.dim, cfg.dim, bias=False) if cfg.drawn_pool else None
        cos, sin = rope_tables(cfg.dim // cfg.n_head, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        nn.init.zeros_(self.output.weight)
        if self.colour_out is not None:
            nn.init.zeros_(self.colour_out.weight)
        if self.code_out is not None:
            nn.init.zeros_(self.code_out.weight)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self,
        ids: torch.Tensor,  # (B, T)
        pos: torch.Tensor,  # (B, T, 3) own positions
        target_pos: torch.Tensor,  # (B, T, 3) positions of the tokens to predict
        cache: KVCache | None = None,
        start: int = 0,
        segment: torch.Tensor | None = None,  # (B, T) layouts' parts: CONTENT (0) or a condition part (1, 2, ..)
        select: torch.Tensor | None = None,  # (B, T) bool: logits only at these positions (a training loss's)
        targets: torch.Tensor | None = None,  # (M,) the ids to score at the selected positions
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, vocab) in float32, or (M, vocab) at the M selected positions, or with targets their `scores`;
        with a cache, the tokens sit at stream positions start.."""
        t = ids.shape[1]
        if start + t > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {start + t} tokens is longer than model.max_seq_len={self.cfg.max_seq_len}")
        mask = None
        if self.cfg.dca and segment is not None and t > 1:
            if start:
                raise ValueError("disentangled attention reads a whole prompt at once, from stream position 0")
            mask = dca_mask(segment)
        if self.cfg.read_both_ways and t > 1:
            mask = self.read_mask(ids, mask, start)
        x = emb = self.tok_embeddings(ids)  # (B, T, D)
        if self.text_proj is not None:
            is_text = self.text_mask(ids)
            x = x + self.pooled(~is_text, emb, is_text, self.text_proj, cache, 0, start)
            if self.pair_proj is not None:
                pairs, counted = self.word_pairs(is_text, emb, cache, start)
                x = x + self.pooled(~is_text, pairs, counted, self.pair_proj, cache, 1, start)
        if self.image_proj is not None:
            is_image = self.image_mask(ids)
            slot = self.cfg.text_pool + self.cfg.text_pool_pairs  # the text pools come first in the cache's sums
            x = x + self.pooled(~is_image, emb, is_image, self.image_proj, cache, slot, start, normalise=True)
        code_rows, output = self.tables(cache)
        codes = self.code_embeddings(ids, code_rows)  # (B, T, D): image codes from their vectors
        x, emb = x + codes, emb + codes
        if self.drawn_proj is not None:
            is_image = self.image_mask(ids)
            if self.cfg.drawn_pool == "masks":  # each code as its mask in the first colour
                colour = (ids - self.image_start) % self.cfg.code_colours  # (B, T), read at image ids only
                masks = torch.where(is_image[..., 0], ids - colour, ids)
                emb = self.tok_embeddings(masks) + self.code_embeddings(masks, code_rows)
            x = x + is_image * self.drawn_proj(self.drawn(emb, is_image, cache, start))
        x = self.drop(x + self.here(pos) + self.next(target_pos))
        if self.cfg.rope == "grid":
            cos, sin = grid_angles(pos, self.cfg.dim // self.cfg.n_head, self.cfg.rope_theta)
        else:
            cos, sin = self.rope_cos[start : start + t], self.rope_sin[start : start + t]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, cache, i, start, mask)
        if select is not None:
            x = x[select]  # (M, D)
        h = self.norm(x)
        return self.logits(h, output) if targets is None else self.scores(h, targets, output)  # (B, T, V) .. (M,) x 2

    def tables(self, cache: KVCache | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The image codes' input rows from their vectors (None without code_dim) and the output table; made once per
        KV cache, whose tokens all see the same weights."""
        if cache is not None and cache.tables is not None:
            return cache.tables
        tables = (None if self.code_in is None else self.code_in(self.code_vectors), self.output_weight())
        if cache is not None:
            cache.tables = tables
        return tables

    def logits(self, h: torch.Tensor, output: torch.Tensor | None = None) -> torch.Tensor:
        """(..., D) -> (..., vocab) float32, by the output table (`output_weight()` unless given). With colour_head,
        code mask x K + colour scores log p(mask) + log p(colour | mask): a row per mask and one per colour in place of
        one per code, and the same distribution over codes."""
        head = F.linear(h, self.output_weight() if output is None else output).float()  # (..., rows)
        if self.colour_out is None:
            return head
        colour = self.colour_out(h).float()[..., :, None] + self.colour_given_mask.float().T  # (..., K, masks)
        joint = head[..., None, self.image_start :] + colour.log_softmax(-2)  # (..., K, masks); faster than masks-last
        return torch.cat([head[..., : self.image_start], joint.transpose(-1, -2).flatten(-2)], dim=-1)  # mask x K + c

    def scores(self, h: torch.Tensor, targets: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(M, D) and (M,) ids -> (M,) each id's log-probability among those its slot may emit (an image code among
        the image codes, any other id among the text and specials) and (M,) whether it is the likeliest of them
        (with colour_head: its mask, then its colour given that mask; no code but the target's is scored)."""
        space = IdSpace(self.image_start - len(SPECIALS), self.cfg.image_codes)
        image = targets >= self.image_start  # (M,)
        allowed = torch.stack([space.allowed(TEXT, h.device), space.allowed(IMAGE, h.device)])  # (2, vocab)
        if self.colour_out is None:
            return target_scores(self.logits(h, output), targets, allowed[image.long()])
        k, n = self.cfg.code_colours, self.image_start
        code = (targets - n).clamp(min=0)  # (M,)
        rows = torch.cat([allowed[:, :n], allowed[:, n::k]], dim=1)[image.long()]  # (M, rows): text ids, then masks
        logp, hit = target_scores(F.linear(h, output).float(), torch.where(image, n + code // k, targets), rows)
        colour = self.colour_out(h).float() + self.colour_given_mask[code // k].float()  # (M, K)
        colour_logp, colour_hit = target_scores(colour, code % k, torch.ones_like(colour, dtype=torch.bool))
        return logp + image * colour_logp, hit & (colour_hit | ~image)

    def read_mask(self, ids: torch.Tensor, mask: torch.Tensor | None, start: int) -> torch.Tensor | None:
        """The attention mask (B, 1, T, T) with the image tokens of each reading row (a row holding <sep>) seeing
        each other both ways; `mask` (None: causal) where no row reads."""
        given = self.image_mask(ids)[..., 0] & (ids == SPECIALS.index("<sep>")).any(1, keepdim=True)  # (B, T)
        if not given.any():
            return mask
        if start:
            raise ValueError("a reading row's image is read whole, from stream position 0")
        t = ids.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()[None, None] if mask is None else mask
        return causal | (given[:, :, None] & given[:, None, :])[:, None]

    def text_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, 1) bool: which tokens are text (neither special nor image ids)."""
        return ((ids >= len(SPECIALS)) & (ids < self.image_start)).unsqueeze(-1)

    def image_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, 1) bool: which tokens are image codes."""
        return (ids >= self.image_start).unsqueeze(-1)

    @staticmethod
    def pooled(
        where: torch.Tensor,  # (B, T, 1): the positions that receive the pool
        h: torch.Tensor,  # (B, T, D)
        counted: torch.Tensor,  # (B, T, 1): the positions whose h enter the mean
        proj: nn.Linear,
        cache: KVCache | None,
        pool: int,
        start: int,
        normalise: bool = False,
    ) -> torch.Tensor:
        """(B, T, D): at each `where` token, `proj` of the mean of `h` over the counted tokens up to it (zero elsewhere
        and before any), so an image token holds the prompt's words, or an answer the image's codes, without
        attending to them."""
        run = torch.cat([h * counted, counted.to(h.dtype)], dim=-1).cumsum(1)  # (B, T, D + 1): sum, count
        if cache is not None:
            if start:
                run = run + cache.sums[pool, :, start - 1 : start].to(run.dtype)
            cache.sums[pool, :, start : start + h.shape[1]] = run
        mean = run[..., :-1] / run[..., -1:].clamp(min=1)  # (B, T, D)
        return where * proj(F.rms_norm(mean, mean.shape[-1:], eps=1e-6) if normalise else mean)

    @staticmethod
    def word_pairs(
        is_text: torch.Tensor, emb: torch.Tensor, cache: KVCache | None, start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) each word's normalised embedding times the previous token's, and (B, T, 1) where both are
        words: the pairs a prompt is made of ("red"·"circle"), which a mean of single words loses."""
        words = torch.cat([F.rms_norm(emb, emb.shape[-1:]) * is_text, is_text.to(emb.dtype)], dim=-1)  # (B, T, D+1)
        before = words.new_zeros(words.shape[0], 1, words.shape[-1])
        if cache is not None:
            if start:
                before = cache.words[:, start - 1 : start].to(words.dtype)
            cache.words[:, start : start + emb.shape[1]] = words
        prev = torch.cat([before, words[:, :-1]], dim=1)  # (B, T, D + 1): the token before each
        return words[..., :-1] * prev[..., :-1], is_text & (prev[..., -1:] > 0)

    def code_embeddings(self, ids: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor | float:
        """(B, T, D): each image id's row of `rows` (the codes' projected vectors), zero at other ids (0. without)."""
        if rows is None:
            return 0.0
        return self.image_mask(ids) * F.embedding((ids - self.image_start).clamp(min=0), rows)

    @staticmethod
    def drawn(h: torch.Tensor, is_image: torch.Tensor, cache: KVCache | None, start: int) -> torch.Tensor:
        """(B, T, D): feature by feature, the largest `h` of the image tokens up to each token (zeros before any)."""
        run = h.masked_fill(~is_image, NO_IMAGE).cummax(1).values  # (B, T, D)
        if cache is not None:
            if start:
                run = torch.maximum(run, cache.drawn[:, start - 1 : start].to(run.dtype))
            cache.drawn[:, start : start + h.shape[1]] = run
        return torch.where(run > NO_IMAGE, run, 0.0)

    def output_weight(self) -> torch.Tensor:
        """(rows, D): the output table (a row per id, or with colour_head per mask), whose image rows add the projected
        code vectors when code_dim is set."""
        w = self.output.weight
        if self.code_out is None:
            return w
        vectors = self.code_vectors  # (image_codes, code_dim)
        if self.colour_out is not None:  # a mask's vector: its codes' spread over the colours, the mask scaled
            by_colour = vectors.view(-1, self.cfg.code_colours, vectors.shape[-1])  # (masks, K, code_dim)
            vectors = (by_colour - by_colour.mean(1, keepdim=True)).pow(2).mean(1).sqrt()  # (masks, code_dim)
        return torch.cat([w[: self.image_start], w[self.image_start :] + self.code_out(vectors)])

    @property
    def image_start(self) -> int:
        """The first image id: image codes are the last cfg.image_codes ids."""
        return self.cfg.vocab_size - self.cfg.image_codes

    def new_cache(self, batch: int, max_len: int) -> KVCache:
        """A cache in the weights' dtype, but float32 on a CPU, whose one-token attention is faster in it."""
        w = self.output.weight
        return KVCache(self.cfg, batch, max_len, w.device, torch.float32 if w.device.type == "cpu" else w.dtype)

    def num_params(self, embeddings: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n if embeddings else n - self.tok_embeddings.weight.numel()
