"""Any-to-image: the conditioned layout, disentangled causal attention, and guidance per condition."""

import pytest
import torch

from tessera.generate.generator import generate, score
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import CONTENT, NO_POS, TEXT_PART, blank, conditioned, conditioned_length, pad_text

SPACE = IdSpace(n_text=12, n_image=24)


def tiny(dca: bool) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=SPACE.size, dim=64, n_layer=2, n_head=4, n_kv_head=2, max_seq_len=80, dca=dca)
    m = Transformer(cfg)
    torch.nn.init.normal_(m.output.weight, std=0.3)
    return m.eval()


@pytest.fixture(scope="module")
def models() -> dict[bool, Transformer]:
    return {dca: tiny(dca) for dca in (False, True)}


def example(b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    text = pad_text(SPACE, [[1, 2, 3], [4]][:b], 4)
    conditions = torch.randint(SPACE.n_image, (b, 1, 3, 4), generator=g)
    codes = torch.randint(SPACE.n_image, (b, 3, 4), generator=g)
    return text, conditions, codes


def test_the_layout_puts_the_condition_on_the_image_grid_and_the_loss_on_the_image_alone():
    text, conditions, codes = example()
    order = make_orders("random", 2, 3, 4, torch.Generator().manual_seed(1))
    batch = conditioned(SPACE, text, conditions, codes, order)
    assert batch.ids.shape[1] == conditioned_length(4, 12, 1)
    cond = slice(5, 17)  # text (4), <boi>, the condition's 12 tokens
    assert torch.equal(SPACE.codes(batch.ids[:, cond]), conditions[:, 0].flatten(1))
    assert torch.equal(batch.pos[0, cond, 1:], torch.stack([torch.arange(12) // 4, torch.arange(12) % 4], 1))
    assert (batch.slot[:, cond] == IMAGE).all() and not batch.loss[:, cond].any()
    assert batch.loss.sum(1).tolist() == [12, 12] and (batch.slot[batch.loss] == IMAGE).all()
    image = batch.ids[:, -13:-1]
    assert torch.equal(SPACE.codes(image), codes.flatten(1).gather(1, order))
    assert set(batch.part[0, :4].tolist()) == {TEXT_PART} and set(batch.part[0, 4:18].tolist()) == {2}
    assert set(batch.part[0, 18:].tolist()) == {CONTENT}


def test_blank_drops_one_condition_and_keeps_the_other():
    text, conditions, codes = example()
    batch = conditioned(SPACE, text, conditions, codes, make_orders("raster", 2, 3, 4))
    no_text = blank(SPACE, batch, (TEXT_PART,))
    assert (no_text.ids[:, :4] == SPACE.special("<pad>")).all()
    assert torch.equal(no_text.ids[:, 4:], batch.ids[:, 4:])
    no_image = blank(SPACE, batch, (2,))
    assert (no_image.ids[:, 4:18] == SPACE.special("<pad>")).all() and (no_image.pos[:, 4:18] == NO_POS).all()
    assert (no_image.slot[:, 4:18] == TEXT).all() and torch.equal(no_image.ids[:, :4], batch.ids[:, :4])


def test_disentangled_attention_reads_a_condition_the_same_whatever_the_text_says(models):
    """What DCA prevents: with it, the text cannot change how the visual condition is read (its tokens' outputs);
    without it, it does. The drawn image still sees both."""
    text, conditions, codes = example()
    other = pad_text(SPACE, [[7, 8], [9, 10, 11]], 4)
    order = make_orders("raster", 2, 3, 4)
    outputs = {}
    for dca, model in models.items():
        runs = []
        for t in (text, other):
            batch = conditioned(SPACE, t, conditions, codes, order)
            ids, pos, tpos = batch.inputs()
            runs.append(model(ids, pos, tpos, segment=batch.part[:, :-1]))
        outputs[dca] = runs
    cond = slice(4, 17)  # <boi> and the condition's tokens
    assert torch.allclose(outputs[True][0][:, cond], outputs[True][1][:, cond], atol=1e-6)
    assert not torch.allclose(outputs[False][0][:, cond], outputs[False][1][:, cond], atol=1e-3)
    image = slice(18, None)
    assert not torch.allclose(outputs[True][0][:, image], outputs[True][1][:, image], atol=1e-3)


def test_without_parts_disentangled_attention_is_plain_causal(models):
    text, conditions, codes = example()
    batch = conditioned(SPACE, text, conditions, codes, make_orders("raster", 2, 3, 4))
    ids, pos, tpos = batch.inputs()
    plain = models[False](ids, pos, tpos)
    assert torch.allclose(models[True](ids, pos, tpos), plain, atol=1e-6)  # the same weights (same seed)
    all_content = torch.zeros_like(ids)
    assert torch.allclose(models[True](ids, pos, tpos, segment=all_content), plain, atol=1e-5)


CONFIGS = [
    SamplingConfig(),
    SamplingConfig(cfg_scale=3.0),
    SamplingConfig(image_scale=2.0),
    SamplingConfig(cfg_scale=4.0, image_scale=1.5, top_k=6, temperature=0.8),
]


@pytest.mark.parametrize("dca", [False, True])
@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"s{c.cfg_scale}-i{c.image_scale}-k{c.top_k}")
def test_rescored_logprobs_equal_sampled_with_a_condition(models, dca, cfg):
    text, conditions, _ = example()
    order = make_orders("spanning-tree", 2, 3, 4, torch.Generator().manual_seed(3))
    model = models[dca]
    drawn = generate(model, SPACE, text, (3, 4), order, cfg, torch.Generator().manual_seed(0), conditions=conditions)
    rescored = score(model, SPACE, text, drawn.ids, order, 4, cfg, conditions=conditions)
    assert (rescored - drawn.logprobs).abs().max() < 1e-5
    if cfg.image_scale != 1.0:  # the image scale is used: the text-only rule gives other numbers
        text_only = SamplingConfig(cfg.temperature, cfg.top_k, cfg.top_p, cfg.cfg_scale)
        other = score(model, SPACE, text, drawn.ids, order, 4, text_only, conditions=conditions)
        assert (other - drawn.logprobs).abs().max() > 1e-3


def test_the_condition_changes_what_is_drawn(models):
    text, conditions, _ = example()
    order = make_orders("raster", 2, 3, 4)
    cfg = SamplingConfig(top_k=1)
    a = generate(models[True], SPACE, text, (3, 4), order, cfg, conditions=conditions)
    b = generate(models[True], SPACE, text, (3, 4), order, cfg, conditions=(conditions + 5) % SPACE.n_image)
    assert not torch.equal(a.codes, b.codes)
