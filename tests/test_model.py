"""The transformer: KV cache, target-aware positions, initialisation, optimizer groups, the colour head."""

import pytest
import torch

from tessera.errors import TesseraError
from tessera.model.transformer import ModelConfig, Transformer
from tessera.train.trainer import param_groups


def tiny(
    n_kv_head: int = 2, text_pool: bool = False, pairs: bool = False, image_pool: bool = False, drawn: str = ""
) -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, dim=64, n_layer=2, n_head=4, n_kv_head=n_kv_head, max_seq_len=64)
    cfg.image_codes, cfg.text_pool, cfg.text_pool_pairs = 20, text_pool, pairs  # ids 8..29 text, 30..49 codes
    cfg.image_pool, cfg.drawn_pool = image_pool, drawn
    model = Transformer(cfg)
    torch.nn.init.normal_(model.output.weight, std=0.5)  # a trained-looking head, so logits differ
    return model.eval()


def inputs(b=3, t=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 50, (b, t), generator=g),
        torch.randint(-1, 8, (b, t, 3), generator=g),
        torch.randint(-1, 8, (b, t, 3), generator=g),
    )


CACHES = [(1, False, False, False, ""), (2, False, False, False, ""), (4, False, False, False, ""),
          (2, True, False, False, ""), (2, True, True, False, ""), (2, False, False, True, ""),
          (2, False, False, False, "codes"), (2, True, True, True, "codes")]  # fmt: skip


@pytest.mark.parametrize("n_kv_head,text_pool,pairs,image_pool,drawn", CACHES)
def test_cached_logits_match_uncached(n_kv_head, text_pool, pairs, image_pool, drawn):
    model = tiny(n_kv_head, text_pool, pairs, image_pool, drawn)
    ids, pos, target = inputs()
    with torch.no_grad():
        full = model(ids, pos, target)
        cache = model.new_cache(3, 24)
        chunks = [model(ids[:, :9], pos[:, :9], target[:, :9], cache, 0)]  # a prompt, then one token at a time
        chunks += [model(ids[:, i : i + 1], pos[:, i : i + 1], target[:, i : i + 1], cache, i) for i in range(9, 24)]
        stepped = torch.cat(chunks, dim=1)
        cache = model.new_cache(3, 24)
        two = torch.cat(
            [
                model(ids[:, :10], pos[:, :10], target[:, :10], cache, 0),
                model(ids[:, 10:], pos[:, 10:], target[:, 10:], cache, 10),
            ],
            1,
        )
    assert (stepped - full).abs().max() < 1e-4
    assert (two - full).abs().max() < 1e-4  # a chunk after cached tokens sees them and itself causally
    assert full.abs().max() > 0.1


@pytest.mark.parametrize("text_pool,pairs", [(False, False), (True, False), (True, True)])
def test_causal_and_target_aware(text_pool, pairs):
    model = tiny(text_pool=text_pool, pairs=pairs)
    ids, pos, target = inputs(b=1)
    with torch.no_grad():
        base = model(ids, pos, target)
        later = ids.clone()
        later[0, 15] = (later[0, 15] + 1) % 50
        changed = model(later, pos, target)
        moved = target.clone()
        moved[0, 15] = torch.tensor([0, 7, 7]) if moved[0, 15].tolist() != [0, 7, 7] else torch.tensor([0, 6, 6])
        retarget = model(ids, pos, moved)
    assert torch.equal(base[0, :15], changed[0, :15])  # the past never sees the future
    assert not torch.allclose(base[0, 15], changed[0, 15])
    assert not torch.allclose(base[0, 15], retarget[0, 15])  # told another target cell, it predicts otherwise


def text_pooled(model: Transformer, ids: torch.Tensor, pairs: bool) -> torch.Tensor:
    """(1, T, D) what text_pool adds at each token: the mean of single words, or of adjacent words' products."""
    is_text, emb = model.text_mask(ids), model.tok_embeddings(ids)
    if pairs:
        return model.pooled(~is_text, *model.word_pairs(is_text, emb, None, 0), model.pair_proj, None, 1, 0)
    return model.pooled(~is_text, emb, is_text, model.text_proj, None, 0, 0)


def test_text_pool_gives_each_later_token_the_mean_of_the_words_before_it():
    model = tiny(text_pool=True)
    ids = torch.tensor([[1, 9, 12, 3, 30, 31, 10, 40]])  # <bos> two words <boi> two codes, a word, a code
    with torch.no_grad():
        emb = model.tok_embeddings(ids)
        context = text_pooled(model, ids, pairs=False)  # (1, 8, D)
        two, three = model.text_proj(emb[0, 1:3].mean(0)), model.text_proj(emb[0, [1, 2, 6]].mean(0))
    assert torch.equal(context[0, [0, 1, 2, 6]], torch.zeros(4, 64))  # text, and what comes before any text
    assert all(torch.allclose(context[0, i], two, atol=1e-6) for i in (3, 4, 5))
    assert torch.allclose(context[0, 7], three, atol=1e-6)


def test_text_pool_pairs_give_each_later_token_the_mean_product_of_adjacent_words():
    model = tiny(text_pool=True, pairs=True)
    ids = torch.tensor([[1, 9, 12, 14, 3, 30, 31, 10, 40]])  # <bos> three words <boi> two codes, a word, a code
    with torch.no_grad():
        words = torch.nn.functional.rms_norm(model.tok_embeddings(ids), (64,))[0]  # (9, D)
        context = text_pooled(model, ids, pairs=True)
        pairs = model.pair_proj(torch.stack([words[1] * words[2], words[2] * words[3]]).mean(0))
    assert torch.equal(context[0, [0, 1, 2, 3, 7]], torch.zeros(5, 64))  # words, and what comes before a pair
    # the lone word after the codes makes no pair (the token before it is a code), so the last code sees the same
    assert all(torch.allclose(context[0, i], pairs, atol=1e-6) for i in (4, 5, 6, 8))


def test_text_pool_pairs_tell_which_colour_goes_with_which_shape():
    model = tiny(text_pool=True, pairs=True)
    red_circle = torch.tensor([[1, 9, 12, 13, 10, 14, 3]])  # <bos> red circle and blue square <boi>
    blue_circle = torch.tensor([[1, 10, 12, 13, 9, 14, 3]])  # the same words, colours swapped
    with torch.no_grad():
        bag = [text_pooled(model, ids, pairs=False)[0, -1] for ids in (red_circle, blue_circle)]
        pairs = [text_pooled(model, ids, pairs=True)[0, -1] for ids in (red_circle, blue_circle)]
    assert torch.allclose(*bag, atol=1e-6) and not torch.allclose(*pairs, atol=1e-3)


def test_text_pool_pairs_need_text_pool():
    with pytest.raises(TesseraError, match="text_pool_pairs needs"):
        ModelConfig(vocab_size=50, image_codes=20, text_pool_pairs=True).validate()


def test_image_pool_gives_each_later_token_the_mean_of_the_codes_before_it():
    model = tiny(image_pool=True)
    ids = torch.tensor([[1, 9, 3, 30, 31, 32, 4, 7, 12, 40]])  # <bos> word <boi> three codes <eoi> <sep> word code
    with torch.no_grad():
        emb = model.tok_embeddings(ids)
        is_image = model.image_mask(ids)
        context = model.pooled(~is_image, emb, is_image, model.image_proj, None, 0, 0, normalise=True)  # (1, 10, D)
        three = model.image_proj(torch.nn.functional.rms_norm(emb[0, 3:6].mean(0), (64,), eps=1e-6))
        without = model(ids, *inputs(b=1, t=10)[1:])
        model.image_proj.weight.zero_()
        changed = model(ids, *inputs(b=1, t=10)[1:])
    assert torch.equal(context[0, [0, 1, 2, 3, 4, 5, 9]], torch.zeros(7, 64))  # before the image, and image tokens
    assert all(torch.allclose(context[0, i], three, atol=1e-6) for i in (6, 7, 8))
    assert torch.equal(without[0, :6], changed[0, :6]) and not torch.allclose(without[0, 6:], changed[0, 6:])


def test_drawn_pool_gives_each_image_token_the_running_max_of_the_codes_so_far():
    model = tiny(drawn="codes")
    ids = torch.tensor([[1, 9, 3, 30, 41, 32, 4, 35]])  # <bos> word <boi> three codes <eoi> a code after
    with torch.no_grad():
        emb = model.tok_embeddings(ids)
        drawn = model.drawn(emb, model.image_mask(ids), None, 0)  # (1, 8, D)
        without = model(ids, *inputs(b=1, t=8)[1:])
        model.drawn_proj.weight.zero_()
        changed = model(ids, *inputs(b=1, t=8)[1:])
    assert torch.equal(drawn[0, :3], torch.zeros(3, 64))  # no image token yet
    for i in (3, 4, 5, 6, 7):  # image tokens and the ones after: the largest of each feature so far
        assert torch.equal(drawn[0, i], emb[0, [j for j in range(3, i + 1) if ids[0, j] >= 30]].amax(0))
    assert torch.equal(without[0, :3], changed[0, :3]) and not torch.allclose(without[0, 3:], changed[0, 3:])


def test_image_pool_needs_image_codes():
    with pytest.raises(TesseraError, match="image_pool needs"):
        ModelConfig(vocab_size=50, image_pool=True).validate()
    with pytest.raises(TesseraError, match="drawn_pool needs"):
        ModelConfig(vocab_size=50, drawn_pool="codes").validate()
    with pytest.raises(TesseraError, match="drawn_pool=masks needs"):
        ModelConfig(vocab_size=50, image_codes=20, drawn_pool="masks").validate()
    with pytest.raises(TesseraError, match="codes, masks or empty"):
        ModelConfig(vocab_size=50, image_codes=20, drawn_pool="yes").validate()


def test_zero_initialised_head_starts_uniform():
    model = Transformer(ModelConfig(vocab_size=50, dim=64, n_layer=2, n_head=4, n_kv_head=2))
    ids, pos, target = inputs(b=1, t=8)
    assert torch.equal(model(ids, pos, target), torch.zeros(1, 8, 50))


def test_weight_decay_only_on_matrices():
    model = tiny()
    decay, rest = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and rest["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    no_decay = {id(p) for p in rest["params"]}
    assert id(model.tok_embeddings.weight) in no_decay and id(model.norm.weight) in no_decay
    assert all(id(t.weight) in no_decay for t in model.here.tables) and id(model.output.weight) not in no_decay
    assert len(decay["params"]) + len(rest["params"]) == len(list(model.parameters()))


def test_config_errors_name_the_problem():
    with pytest.raises(TesseraError, match="n_kv_head"):
        Transformer(ModelConfig(vocab_size=10, dim=64, n_head=4, n_kv_head=3))
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny()(*inputs(b=1, t=65))


def with_code_vectors(vectors: torch.Tensor | None) -> Transformer:
    """A tiny model whose last 10 ids are image codes, embedded from `vectors` too when given."""
    torch.manual_seed(0)
    code_dim = 0 if vectors is None else vectors.shape[1]
    model = Transformer(ModelConfig(vocab_size=50, dim=64, n_layer=2, n_head=4, n_kv_head=2, image_codes=10,
                                    code_dim=code_dim))  # fmt: skip
    if vectors is not None:
        model.code_vectors.copy_(vectors)
    return model


def taught_code_40(model: Transformer) -> torch.Tensor:
    """Mean logits after five SGD steps that teach the model to say id 40 everywhere."""
    ids, pos, target = inputs(b=4, t=8)
    assert torch.equal(model(ids, pos, target), torch.zeros(4, 8, 50))  # uniform at the start
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(ids, pos, target).flatten(0, 1), torch.full((32,), 40))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return model(ids, pos, target).mean((0, 1))


def test_code_vectors_share_what_is_learned_between_codes_that_look_alike():
    vectors = torch.randn(10, 6, generator=torch.Generator().manual_seed(0))  # ids 40..49
    vectors[1] = vectors[0]  # codes 40 and 41 look alike; 42 does not
    shared = taught_code_40(with_code_vectors(vectors))
    assert shared[41] - shared[42] > 1.0, shared[40:]  # the untaught look-alike rose with it
    free = taught_code_40(with_code_vectors(None))
    assert free[40] - free[42] > 1.0 and abs(free[41] - free[42]) < 1e-4, free[40:]  # free codes learn alone


def test_code_vectors_need_image_codes():
    with pytest.raises(TesseraError, match="image_codes"):
        Transformer(ModelConfig(vocab_size=50, dim=64, n_head=4, n_kv_head=2, code_dim=6))


def test_selected_logits_are_the_full_logits_at_those_positions():
    from tessera.sequence.ids import IMAGE, SPECIALS, IdSpace
    from tessera.train.trainer import masked_loss

    model = with_code_vectors(torch.randn(10, 6, generator=torch.Generator().manual_seed(0)))
    for p in model.parameters():  # the zero-initialised heads made non-zero, so each term counts
        torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(p.numel()))
    ids, pos, target = inputs(b=3, t=8)
    select = torch.rand(3, 8, generator=torch.Generator().manual_seed(1)) < 0.6
    full = model(ids, pos, target)  # (B, T, V)
    assert torch.allclose(model(ids, pos, target, select=select), full[select], atol=1e-5)
    space = IdSpace(n_text=50 - 10 - len(SPECIALS), n_image=10)  # ids 40..49 are the image codes
    slots = torch.full((3, 8), IMAGE)
    codes = 40 + torch.randint(10, (3, 8), generator=torch.Generator().manual_seed(2))
    whole, _ = masked_loss(full, codes, slots, select, space)
    selected, _ = masked_loss(model(ids, pos, target, select=select), codes, slots, select, space)
    assert torch.allclose(whole, selected, atol=1e-5)


def colour_head_model(drawn: str = "") -> Transformer:
    """A tiny model whose last 20 ids are 5 masks x 4 colours (code = mask x 4 + colour), scored by the colour head."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=50, dim=64, n_layer=2, n_head=4, n_kv_head=2, image_codes=20, code_dim=6,
                      colour_head=True, code_colours=4, drawn_pool=drawn)  # fmt: skip
    model = Transformer(cfg)
    model.code_vectors.normal_(generator=torch.Generator().manual_seed(0))
    for p in model.parameters():  # the zero-initialised heads made non-zero, so each term counts
        torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(p.numel()))
    return model.eval()


def test_the_colour_head_scores_a_code_as_its_mask_then_its_colour():
    model = colour_head_model()
    h = torch.randn(7, 64, generator=torch.Generator().manual_seed(3))  # (M, D) final hidden states
    with torch.no_grad():
        rows = torch.nn.functional.linear(h, model.output_weight()).softmax(-1)  # (M, 30 + 5): text ids, then masks
        p = model.logits(h).softmax(-1)  # (M, 50)
        model.colour_given_mask[:, 2] += 20.0  # colour 2 whatever the mask
        biased = model.logits(h).softmax(-1)[:, 30:].reshape(7, 5, 4)  # (M, mask, colour)
    assert torch.allclose(p[:, :30], rows[:, :30], atol=1e-6)  # text ids as a plain head scores them
    assert torch.allclose(p[:, 30:].reshape(7, 5, 4).sum(-1), rows[:, 30:], atol=1e-6)  # a mask's codes: code // 4
    assert (biased[..., 2] > 0.99 * biased.sum(-1)).all()  # the colour is code % 4
    assert (p[:, 30:].reshape(7, 5, 4)[..., 2] < 0.9 * rows[:, 30:]).all()  # ... which only the colour head decided


def test_the_colour_head_scores_targets_alone_as_the_whole_distribution_does():
    from tessera.sequence.ids import IMAGE, SPECIALS, TEXT, IdSpace
    from tessera.train.trainer import masked_loss, slot_loss

    model = colour_head_model()
    ids, pos, target = inputs(b=3, t=8)
    g = torch.Generator().manual_seed(2)
    targets = torch.where(torch.rand(3, 8, generator=g) < 0.6, torch.randint(30, 50, (3, 8), generator=g),
                          torch.randint(1, 30, (3, 8), generator=g))  # fmt: skip
    slots = torch.where(targets >= 30, IMAGE, TEXT)
    select = torch.rand(3, 8, generator=g) < 0.7
    space = IdSpace(n_text=30 - len(SPECIALS), n_image=20)
    with torch.no_grad():
        whole, _ = masked_loss(model(ids, pos, target), targets, slots, select, space)
        logp, _ = model(ids, pos, target, select=select, targets=targets[select])  # (M,)
    assert (slots[select] == IMAGE).any() and (slots[select] == TEXT).any()
    assert torch.allclose(slot_loss(-logp, slots[select]), whole, atol=1e-5)


def test_a_cache_makes_the_code_tables_once_and_gives_the_uncached_logits():
    model = colour_head_model()
    ids, pos, target = inputs(b=2, t=12)
    with torch.no_grad():
        full = model(ids, pos, target)
        cache = model.new_cache(2, 12)
        stepped = [model(ids[:, :4], pos[:, :4], target[:, :4], cache, 0)]
        tables = cache.tables
        stepped += [model(ids[:, i : i + 1], pos[:, i : i + 1], target[:, i : i + 1], cache, i) for i in range(4, 12)]
    assert tables is not None and cache.tables is tables  # made by the first call, read by the rest
    assert (torch.cat(stepped, dim=1) - full).abs().max() < 1e-4


def test_a_colour_head_needs_mask_times_colour_codes():
    with pytest.raises(TesseraError, match="colour_head"):
        Transformer(ModelConfig(vocab_size=50, dim=64, n_head=4, n_kv_head=2, image_codes=20, colour_head=True))


def test_the_masks_pool_reads_a_drawn_code_as_its_mask_whatever_its_colour(monkeypatch):
    model = colour_head_model(drawn="masks")
    pooled, drawn = [], Transformer.drawn
    monkeypatch.setattr(Transformer, "drawn", staticmethod(lambda h, *rest: pooled.append(h) or drawn(h, *rest)))
    ids = torch.tensor([[1, 9, 3, 30 + 4 * 2 + 1, 30 + 4 * 3 + 2, 30 + 4 * 0 + 3]])  # three codes: mask x 4 + colour
    recoloured = torch.tensor([[1, 9, 3, 30 + 4 * 2 + 3, 30 + 4 * 3 + 0, 30 + 4 * 0 + 1]])  # the same masks
    remasked = torch.tensor([[1, 9, 3, 30 + 4 * 1 + 1, 30 + 4 * 3 + 2, 30 + 4 * 0 + 3]])  # another first mask
    _, pos, target = inputs(b=1, t=6)
    with torch.no_grad():
        for x in (ids, recoloured, remasked):
            model(x, pos, target)
        cache = model.new_cache(1, 6)
        stepped = [model(ids[:, :4], pos[:, :4], target[:, :4], cache, 0)]
        stepped += [model(ids[:, i : i + 1], pos[:, i : i + 1], target[:, i : i + 1], cache, i) for i in (4, 5)]
        full = model(ids, pos, target)
    assert torch.equal(pooled[0][0, 3:], pooled[1][0, 3:]) and not torch.equal(pooled[0][0, 3], pooled[2][0, 3])
    assert (torch.cat(stepped, dim=1) - full).abs().max() < 1e-4
