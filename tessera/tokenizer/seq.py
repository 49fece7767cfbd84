"""SeqTok: an image as one ordered sequence of n tokens, any prefix of which decodes (the Selftok idea).

The encoder reads the image and n queries, each a learned vector plus a linear map of the whole image (so the tokens
differ between images from the first step, and the VQ does not collapse onto one code); query k attends to the image
and to queries 1..k only (causal token attention), so token k can only add to what the tokens before it carry. Each
query is vector-quantized (cosine VQ with EMA). The decoder is deterministic and trained with prefix dropout (a
random number of leading tokens kept, the rest absent). It spreads the tokens over the image's places with one
linear map (nothing must first learn where to look: a transformer decoder spends hundreds of CPU steps predicting
background alone before it does), refines them with transformer blocks, and predicts the image's 2D proxy codes (a
trained PatchVQ, copied in and fixed), as TiTok trains its 1D tokens against a 2D VQ's codes; the proxy's patches
give the pixels, so edges stay sharp. Codes are a one-row grid (1, n), so every layout, the sampler, rescoring and
GRPO run on them unchanged.

With `decoder: flow` a rectified flow (flow matching) draws the pixels instead, as Selftok's diffusion decoder does:
from Gaussian noise to the image in a few Euler steps, conditioned at each place on the code decoder's features
there (what the prefix says of it) and on the code head's expected picture (a draft it corrects). It trains beside
the code head, so the tokens learn from both; its patches are snapped to the proxy's nearest ones at the end. The
noise is fixed, so the same codes always give the same image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tessera.config import at_least
from tessera.errors import ConfigError
from tessera.tokenizer.frames import FrameByFrame
from tessera.tokenizer.omni import positions, sincos_at
from tessera.tokenizer.patch import PatchVQ, PatchVQConfig
from tessera.tokenizer.quantizers import Quantized, QuantizerConfig, VectorQuantizer


@dataclass
class SeqTokConfig:
    tokens: int = 32  # n: the sequence's length
    canvas: int = 64  # the side of the images it codes
    width: int = 128
    heads: int = 4
    encoder_blocks: int = 2
    decoder_blocks: int = 2
    mlp_ratio: float = 4.0
    group: int = 2  # the transformers read and write g x g proxy patches per position (a quarter of the length)
    min_prefix: int = 1  # prefix dropout keeps from this many to n leading tokens, uniformly
    code_loss: float = 1.0  # weight of the cross-entropy on the proxy's codes
    decoder: str = "codes"  # codes: each patch the proxy's most likely code | flow: a rectified flow draws the pixels
    flow_blocks: int = 2
    flow_steps: int = 8  # Euler steps from noise to image when a flow decoder decodes
    flow_loss: float = 1.0  # weight of the flow-matching loss
    proxy: PatchVQConfig = field(default_factory=PatchVQConfig)
    proxy_init: str = ""  # the trained patch tokenizer whose codes the decoder predicts (training needs one)
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=1024, dim=16))

    def validate(self, prefix: str = "seq.") -> None:
        at_least(self, 1, "tokens", "width", "heads", "encoder_blocks", "decoder_blocks", "group", prefix=prefix)
        if (self.canvas // self.proxy.patch) % self.group:
            raise ConfigError(f"{prefix}group ({self.group}) must divide the proxy's grid side")
        if self.width % self.heads:
            raise ConfigError(f"{prefix}width ({self.width}) must divide by heads ({self.heads})")
        at_least(self, 16, "canvas", prefix=prefix)
        if not 1 <= self.min_prefix <= self.tokens:
            raise ConfigError(f"{prefix}min_prefix must be 1 to tokens ({self.tokens}), got {self.min_prefix}")
        if self.decoder not in ("codes", "flow"):
            raise ConfigError(f"{prefix}decoder must be codes or flow, got {self.decoder!r}")
        at_least(self, 1, "flow_blocks", "flow_steps", prefix=prefix)
        if self.quantizer.kind != "vq":
            raise ConfigError(f"{prefix}quantizer.kind must be vq (cosine VQ with EMA)")
        self.proxy.validate(prefix + "proxy.")
        self.quantizer.validate(prefix + "quantizer.")


class Block(nn.Module):
    """Pre-norm transformer block with an attention mask (True: may attend)."""

    def __init__(self, cfg: SeqTokConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width), nn.LayerNorm(cfg.width)
        self.qkv, self.proj = nn.Linear(cfg.width, 3 * cfg.width), nn.Linear(cfg.width, cfg.width)
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # (B, L, D), (B|1, 1, L, L)
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return x + self.mlp(self.norm2(x))


class FlowDecoder(nn.Module):
    """A rectified flow from noise x0 to pixels x1 over places (B, L, P), conditioned per place on features (B, L, D)
    and on a draft (B, L, P), the code head's expected picture. At x_t = (1 - t) x0 + t x1 it predicts the clean x1
    as the draft plus a correction (a small network does better predicting the image than the noise in it, and
    starts from the draft), which gives the velocity (x1 - x_t) / (1 - t)."""

    def __init__(self, cfg: SeqTokConfig, pixels_per_place: int):
        super().__init__()
        d = cfg.width
        self.pixels_in, self.draft_in = nn.Linear(pixels_per_place, d), nn.Linear(pixels_per_place, d)
        self.condition = nn.Linear(d, d)
        self.time = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.flow_blocks))
        self.norm = nn.LayerNorm(d)
        self.correction = nn.Linear(d, pixels_per_place)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def clean(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
        """(B, L, P) at times (B,) -> the predicted clean pixels (B, L, P)."""
        h = self.pixels_in(x) + self.draft_in(draft) + self.condition(cond)
        h = h + self.time(sincos_at(1000.0 * t, cond.shape[-1], base=1000.0))[:, None]  # times as 0..1000
        for block in self.blocks:
            h = block(h)
        return draft + self.correction(self.norm(h))

    def loss(self, x1: torch.Tensor, cond: torch.Tensor, draft: torch.Tensor) -> torch.Tensor:
        """Flow matching at a uniform random time on the straight path, as the squared error of the clean pixels."""
        t = torch.rand(x1.shape[0], device=x1.device)
        xt = torch.lerp(torch.randn_like(x1), x1, t[:, None, None])
        return F.mse_loss(self.clean(xt, t, cond, draft), x1)

    def sample(self, cond: torch.Tensor, draft: torch.Tensor, steps: int) -> torch.Tensor:
        """Euler steps along the predicted velocity from a fixed noise to pixels (B, L, P)."""
        b = cond.shape[0]
        gen = torch.Generator(device=cond.device).manual_seed(0)
        x = torch.randn(draft.shape, generator=gen, device=cond.device)
        for i in range(steps):
            t = torch.full((b,), i / steps, device=cond.device)
            x = x + (self.clean(x, t, cond, draft) - x) / (steps - i)  # dt / (1 - t) = 1 / (steps - i)
        return x


class SeqTok(FrameByFrame):
    """Images (B, 3, H, W) in [-1, 1] <-> codes (B, 1, n); decode takes any prefix (B, 1, k), k <= n. Clips are
    coded frame by frame."""

    def __init__(self, cfg: SeqTokConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        d, n = cfg.width, cfg.tokens
        self.proxy = PatchVQ(cfg.proxy)
        g = cfg.group
        self.patch_in = nn.Linear(g * g * cfg.proxy.quantizer.dim, d)
        self.queries = nn.Parameter(torch.randn(n, d) * 0.02)
        cells = (cfg.canvas // cfg.proxy.patch // g) ** 2
        self.gather = nn.Linear(cells * d, n * d)  # the whole image straight into every query
        self.encoder = nn.ModuleList(Block(cfg) for _ in range(cfg.encoder_blocks))
        self.encoder_norm = nn.LayerNorm(d)
        self.quant_proj = nn.Linear(d, cfg.quantizer.dim)
        self.quantize = VectorQuantizer(cfg.quantizer)
        self.post_quant = nn.Linear(cfg.quantizer.dim, d)
        self.absent = nn.Parameter(torch.zeros(n, d))  # what a dropped token reads as
        self.spread = nn.Linear(n * d, cells * d)  # every token straight to every place: nothing to route
        self.decoder = nn.ModuleList(Block(cfg) for _ in range(cfg.decoder_blocks))
        self.decoder_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, g * g * self.proxy.codebook_size)
        self.side = g * cfg.proxy.patch  # the pixels one place covers, per side
        self.flow = FlowDecoder(cfg, 3 * self.side**2) if cfg.decoder == "flow" else None

    @property
    def codebook_size(self) -> int:
        return self.quantize.codebook_size

    def grid(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The code grid of a (canvas, canvas) image: one row of n tokens."""
        if tuple(shape) != (self.cfg.canvas, self.cfg.canvas):
            raise ConfigError(f"this sequence tokenizer codes {self.cfg.canvas}x{self.cfg.canvas} images, not {shape}")
        return 1, self.cfg.tokens

    def start_from(self, proxy: nn.Module) -> None:
        """Take a trained patch tokenizer as the proxy (its codebook is then the decoder's fixed vocabulary)."""
        if not isinstance(proxy, PatchVQ) or proxy.cfg != self.cfg.proxy:
            raise ConfigError("seq.proxy_init must be a patch tokenizer with the settings of seq.proxy")
        self.proxy.load_state_dict(proxy.state_dict())

    def train(self, mode: bool = True) -> SeqTok:
        """Train or evaluate everything but the proxy, which stays in eval mode: its EMA codebook never moves."""
        super().train(mode)
        self.proxy.eval()
        return self

    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> the queries' latents before quantization (B, C, n) and the proxy codes (B, h, w)."""
        proxy_codes = self.proxy.encode_image(pixels)  # the proxy is fitted beforehand and stays fixed
        patches = self.proxy.quantize.lookup(proxy_codes)  # (B, 48, h, w): the coded patches, sharp
        g, n = self.cfg.group, self.cfg.tokens
        x = self.patch_in(rearrange(patches, "b c (h p) (w q) -> b (h w) (p q c)", p=g, q=g))  # (B, hw/g^2, D)
        b, h, w = x.shape[0], patches.shape[2] // g, patches.shape[3] // g
        x = x + positions(1, h, w, self.cfg.width, x.device).view(h * w, -1)
        queries = self.queries + self.gather(x.flatten(1)).view(b, n, -1)  # each image its own from the start
        x = torch.cat([x, queries], dim=1)  # (B, hw + n, D)
        mask = torch.ones(h * w + n, h * w + n, dtype=torch.bool, device=x.device)
        mask[: h * w, h * w :] = False  # the image does not read the queries
        mask[h * w :, h * w :] = torch.tril(mask[h * w :, h * w :])  # query k reads queries 1..k
        for block in self.encoder:
            x = block(x, mask[None, None])
        latent = self.quant_proj(self.encoder_norm(x[:, h * w :]))  # (B, n, C)
        return latent.transpose(1, 2), proxy_codes

    def _decode_features(self, latent: torch.Tensor, keep: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Quantized latents (B, C, n) with `keep` (B, n) bool -> features (B, h*w/g^2, D) of the places, g x g
        proxy patches each, in row-major order."""
        g = self.cfg.group
        h, w = hw[0] // g, hw[1] // g
        b, n = keep.shape
        tokens = torch.where(keep[..., None], self.post_quant(latent.transpose(1, 2)), self.absent)  # (B, n, D)
        x = self.spread(tokens.flatten(1)).view(b, h * w, -1)  # (B, hw/g^2, D)
        x = x + positions(1, h, w, self.cfg.width, latent.device).view(1, h * w, -1)
        for block in self.decoder:
            x = block(x)
        return self.decoder_norm(x)

    def _code_logits(self, features: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Features (B, h*w/g^2, D) -> logits over the proxy codes (B, h*w, K), the proxy's grid in row-major order."""
        g = self.cfg.group
        return rearrange(self.head(features), "b (h w) (p q k) -> b (h p w q) k", h=hw[0] // g, p=g, q=g)

    def _places(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, places, 3 s s): the pixels of each place, s = g x the proxy's patch."""
        return rearrange(pixels, "b c (h p) (w q) -> b (h w) (p q c)", p=self.side, q=self.side)

    def _draft(self, logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Code logits (B, h*w, K) -> the flow's draft (B, places, 3 s s): each patch the mean of the proxy's patches
        under the code head's distribution."""
        patches = logits.detach().softmax(-1) @ self.proxy.quantize.embedding.weight  # (B, h*w, 3 f f)
        return self._places(self.proxy.to_pixels(rearrange(patches, "b (h w) c -> b c h w", h=hw[0])))

    def _code_pixels(self, logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Code logits (B, h*w, K) -> pixels (B, 3, H, W): each patch the proxy's most likely one."""
        return self.proxy.decode_image(logits.argmax(-1).view(-1, *hw))

    def _pixels(self, features: torch.Tensor, logits: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Features and their code logits -> pixels (B, 3, H, W): the flow's drawing snapped to the proxy's patches,
        or else the code head's."""
        if self.flow is None:
            return self._code_pixels(logits, hw)
        drawn = self.flow.sample(features, self._draft(logits, hw), self.cfg.flow_steps)  # (B, places, 3 s s)
        side = hw[0] // self.cfg.group
        image = rearrange(drawn, "b (h w) (p q c) -> b c (h p) (w q)", h=side, p=self.side, q=self.side)
        return self.proxy.decode_image(self.proxy.encode_image(image.clamp(-1, 1)))

    def forward_image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """The reconstruction, from a random prefix per image in training (all n tokens in eval mode), and the VQ's
        output with the losses."""
        latent, proxy_codes = self._encode(pixels)
        q = self.quantize(latent)
        b, n = q.codes.shape
        kept = torch.randint(self.cfg.min_prefix, n + 1, (b, 1), device=pixels.device) if self.training else n
        keep = (torch.arange(n, device=pixels.device)[None] < kept).expand(b, n)  # (B, n)
        hw = proxy_codes.shape[1:]
        features = self._decode_features(q.latent, keep, hw)
        logits = self._code_logits(features, hw)
        loss = q.loss + self.cfg.code_loss * F.cross_entropy(logits.flatten(0, 1), proxy_codes.flatten())
        if self.flow is not None:
            loss = loss + self.cfg.flow_loss * self.flow.loss(self._places(pixels), features, self._draft(logits, hw))
        q = Quantized(q.latent, q.codes[:, None], loss, q.perplexity)
        if self.training:  # the code head's picture (a flow would cost its Euler steps at every training step)
            return self._code_pixels(logits.detach(), hw), q
        return self._pixels(features, logits, hw), q  # what decoding draws (the training run's sample grids)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> codes (B, 1, n)."""
        return self.quantize(self._encode(pixels)[0]).codes[:, None]

    def decode_image(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, 1, k), k <= n: the image from this prefix, (B, 3, canvas, canvas)."""
        codes = codes.flatten(1)
        b, k = codes.shape
        n = self.cfg.tokens
        if k > n:
            raise ConfigError(f"{k} codes given; this tokenizer has {n}")
        full = torch.cat([codes, codes.new_zeros(b, n - k)], dim=1)
        keep = torch.arange(n, device=codes.device)[None].expand(b, -1) < k
        hw = (self.cfg.canvas // self.cfg.proxy.patch,) * 2
        features = self._decode_features(self.quantize.lookup(full), keep, hw)
        return self._pixels(features, self._code_logits(features, hw), hw)
