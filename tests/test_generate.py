"""Sampling: the distribution drawn from, and log-probs that rescoring reproduces exactly."""

import copy

import pytest
import torch

from tessera.errors import TesseraError
from tessera.generate.generator import generate, score
from tessera.generate.sampling import log_distribution, sample_token
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import IMAGE, IdSpace
from tessera.sequence.layouts import pad_text

SPACE = IdSpace(n_text=12, n_image=24)


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=SPACE.size, dim=64, n_layer=2, n_head=4, n_kv_head=2, max_seq_len=64))
    torch.nn.init.normal_(m.output.weight, std=0.3)
    return m.eval()


CONFIGS = [
    SamplingConfig(),
    SamplingConfig(temperature=0.6),
    SamplingConfig(top_k=5),
    SamplingConfig(top_p=0.7),
    SamplingConfig(cfg_scale=4.0),
    SamplingConfig(temperature=1.3, top_k=8, top_p=0.9, cfg_scale=2.5, cfg_interval=(0.25, 0.75)),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"t{c.temperature}-k{c.top_k}-p{c.top_p}-s{c.cfg_scale}")
@pytest.mark.parametrize("order", ["raster", "random", "spanning-tree"])
def test_rescored_logprobs_equal_sampled(model, cfg, order):
    """The log-prob of token t comes from position t-1, under the same guidance, temperature and truncation."""
    text = pad_text(SPACE, [[1, 2, 3], [4], [5, 6]], 4)
    orders = make_orders(order, 3, 4, 5, torch.Generator().manual_seed(2))
    drawn = generate(model, SPACE, text, (4, 5), orders, cfg, torch.Generator().manual_seed(0))
    assert drawn.codes.shape == (3, 4, 5) and drawn.logprobs.shape == (3, 20)
    assert ((drawn.ids >= SPACE.image_start) & (drawn.ids < SPACE.size)).all()  # image slots emit image codes only
    assert torch.isfinite(drawn.logprobs).all() and (drawn.logprobs <= 0).all()
    rescored = score(model, SPACE, text, drawn.ids, orders, (4, 5), cfg)
    assert (rescored - drawn.logprobs).abs().max() < 1e-5
    # each known mistake of published RL code gives other numbers
    shifted = torch.cat([rescored[:, 1:], rescored[:, :1]], dim=1)
    assert (shifted - drawn.logprobs).abs().max() > 1e-3
    if cfg.guided:
        unguided = score(
            model, SPACE, text, drawn.ids, orders, (4, 5), SamplingConfig(cfg.temperature, cfg.top_k, cfg.top_p)
        )
        assert (unguided - drawn.logprobs).abs().max() > 1e-3


def test_scoring_can_leave_the_unconditional_rows_out_of_the_gradient(model):
    cfg = SamplingConfig(cfg_scale=3.0)
    text = pad_text(SPACE, [[1, 2], [3]], 3)
    orders = make_orders("raster", 2, 4, 5, torch.Generator().manual_seed(0))
    drawn = generate(model, SPACE, text, (4, 5), orders, cfg, torch.Generator().manual_seed(0))
    grads = []
    for both in (True, False):
        model.zero_grad()
        logp = score(model, SPACE, text, drawn.ids, orders, (4, 5), cfg, train_unconditional=both)
        assert (logp - drawn.logprobs).abs().max() < 1e-5  # the same values either way
        logp.sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert not torch.allclose(grads[0], grads[1])


def test_codes_land_in_the_cells_of_the_order(model):
    text = pad_text(SPACE, [[1]], 2)
    order = torch.tensor([[5, 0, 3, 1, 2, 4]])
    drawn = generate(model, SPACE, text, (2, 3), order, SamplingConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(drawn.codes.flatten()[order[0]], SPACE.codes(drawn.ids[0]))


def test_distribution_rules():
    g = torch.Generator().manual_seed(0)
    cond, uncond = torch.randn(4, SPACE.size, generator=g), torch.randn(4, SPACE.size, generator=g)
    allowed = SPACE.allowed(IMAGE)
    base = log_distribution(cond, uncond, allowed, SamplingConfig(), guide=False)
    assert torch.isinf(base[:, ~allowed]).all() and torch.allclose(base.exp().sum(-1), torch.ones(4))
    assert torch.allclose(base[:, allowed], cond[:, allowed].log_softmax(-1))
    guided = log_distribution(cond, uncond, allowed, SamplingConfig(cfg_scale=3.0), guide=True)
    want = (uncond + 3.0 * (cond - uncond))[:, allowed].log_softmax(-1)  # LlamaGen's u + s (c - u)
    assert torch.allclose(guided[:, allowed], want, atol=1e-6)
    top3 = log_distribution(cond, None, allowed, SamplingConfig(top_k=3), guide=False)
    assert (torch.isfinite(top3).sum(-1) == 3).all()
    nucleus = log_distribution(cond, None, allowed, SamplingConfig(top_p=0.5), guide=False)
    kept = torch.isfinite(nucleus)
    p = base.exp()
    for row in range(4):  # the smallest set of most likely ids whose mass reaches 0.5
        sorted_p = p[row].sort(descending=True).values
        need = int((sorted_p.cumsum(0) < 0.5).sum()) + 1
        assert kept[row].sum() == need
    cold = log_distribution(cond, None, allowed, SamplingConfig(temperature=0.5), guide=False)
    assert torch.allclose(cold[:, allowed], (cond[:, allowed] / 0.5).log_softmax(-1), atol=1e-6)
    greedy = sample_token(log_distribution(cond, None, allowed, SamplingConfig(top_k=1), guide=False), g)
    assert torch.equal(greedy, cond.masked_fill(~allowed, -1e9).argmax(-1))


def test_guidance_interval():
    cfg = SamplingConfig(cfg_scale=3.0, cfg_interval=(0.25, 0.5))
    assert [cfg.guides(i, 8) for i in range(8)] == [False, False, True, True, False, False, False, False]
    assert not SamplingConfig(cfg_scale=1.0).guides(0, 8)


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (SamplingConfig(temperature=0), "temperature"),
        (SamplingConfig(top_p=0), "top_p"),
        (SamplingConfig(cfg_scale=-1), "guidance"),
        (SamplingConfig(cfg_interval=(0.8, 0.2)), "cfg_interval"),
    ],
)
def test_bad_sampling_settings(cfg, named):
    with pytest.raises(TesseraError, match=named):
        cfg.validate()


@pytest.mark.parametrize("order", ["raster", "random"])
def test_grid_rotary_positions_without_boi_rescore_exactly(order):
    """LlamaGen's layout (rope: grid, no <boi>) keeps sampling and rescoring in step, in any order."""
    space = IdSpace(n_text=12, n_image=24, boi=False)
    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=space.size, dim=64, n_layer=2, n_head=2, n_kv_head=1, max_seq_len=64, rope="grid")
    m = Transformer(cfg).eval()
    torch.nn.init.normal_(m.output.weight, std=0.3)
    text = pad_text(space, [[1], [4]], 1)
    orders = make_orders(order, 2, 4, 5, torch.Generator().manual_seed(2))
    sampling = SamplingConfig(cfg_scale=3.0, top_k=6)
    drawn = generate(m, space, text, (4, 5), orders, sampling, torch.Generator().manual_seed(0))
    with torch.no_grad():
        rescored = score(m, space, text, drawn.ids, orders, (4, 5), sampling)
    assert (rescored - drawn.logprobs).abs().max() < 1e-5


def test_bfloat16_sampling_keeps_the_distribution_within_its_rounding(model):
    half = copy.deepcopy(model).to(torch.bfloat16)
    cfg = SamplingConfig(cfg_scale=3.0)
    text = pad_text(SPACE, [[1, 2, 3], [4], [5, 6]], 4)
    orders = make_orders("raster", 3, 4, 5)
    drawn = generate(half, SPACE, text, (4, 5), orders, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        again = score(half, SPACE, text, drawn.ids, orders, (4, 5), cfg)
        full = score(model, SPACE, text, drawn.ids, orders, (4, 5), cfg)
    # guided log-probs in bfloat16 are good to about 0.02 nats (0.13 at worst here, guidance 3 amplifying rounding):
    # cached and batched passes round apart, and float32's distribution is the same to that precision
    assert (again - drawn.logprobs).abs().mean() < 0.05
    assert 0 < (full - drawn.logprobs).abs().mean() < 0.05


def test_tokens_are_drawn_with_their_probabilities_and_never_outside_the_support():
    probs = torch.tensor([0.0, 0.1, 0.0, 0.6, 0.3, 0.0])
    ids = sample_token(probs.log().expand(100_000, -1), torch.Generator().manual_seed(0))
    share = torch.bincount(ids, minlength=6).float() / len(ids)
    assert share[probs == 0].sum() == 0 and (share - probs).abs().max() < 0.01
