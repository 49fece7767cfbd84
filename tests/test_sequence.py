"""The one id space, task layouts and text tokenizers."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.errors import TesseraError
from tessera.model.orders import make_orders
from tessera.sequence.ids import IMAGE, SPECIALS, TEXT, IdSpace
from tessera.sequence.layouts import NO_POS, pad_text, prefix, text_to_image, unconditional
from tessera.text.tokenizers import BPETokenizer, ClassTokenizer, WorldTokenizer, from_dict
from tessera.world import language as lang
from tessera.world.grammar import PromptError
from tessera.world.scene import sample_scene

SPACE = IdSpace(n_text=10, n_image=16)


def test_id_space_ranges_do_not_overlap():
    assert SPACE.text_start == len(SPECIALS) and SPACE.image_start == len(SPECIALS) + 10 and SPACE.size == 34
    codes = torch.arange(16)
    assert torch.equal(SPACE.codes(SPACE.image(codes)), codes)
    assert SPACE.text_ids(SPACE.text([0, 9]) + [SPACE.special("<boi>"), SPACE.image_start]) == [0, 9]
    image, text = SPACE.allowed(IMAGE), SPACE.allowed(TEXT)
    assert image.sum() == 16 and image[SPACE.image_start :].all()
    assert not (image & text).any()  # an image slot never emits text, a text slot never an image code
    assert not text[SPACE.special("<pad>")] and text[SPACE.special("<eos>")]


def test_text_to_image_layout():
    text = pad_text(SPACE, [[1, 2], [3]], 4)
    pad = SPACE.special("<pad>")
    assert text.tolist() == [
        [pad, pad, SPACE.text_start + 1, SPACE.text_start + 2],
        [pad, pad, pad, SPACE.text_start + 3],
    ]
    codes = torch.arange(6).view(1, 2, 3).repeat(2, 1, 1)  # (B, h=2, w=3)
    order = torch.tensor([[0, 1, 2, 3, 4, 5], [5, 3, 1, 0, 2, 4]])
    b = text_to_image(SPACE, text, codes, order)
    assert b.ids.shape == (2, 4 + 1 + 6 + 1)
    assert b.ids[0, 4] == SPACE.special("<boi>") and b.ids[0, -1] == SPACE.special("<eoi>")
    assert torch.equal(SPACE.codes(b.ids[1, 5:11]), torch.tensor([5, 3, 1, 0, 2, 4]))  # in generation order
    assert b.pos[1, 5].tolist() == [0, 1, 2] and b.pos[1, 6].tolist() == [0, 1, 0]  # cell 5 = row 1, col 2
    assert (b.pos[:, :5] == NO_POS).all() and (b.pos[:, -1] == NO_POS).all()
    assert b.loss.sum() == 12 and b.loss[:, 5:11].all()  # loss on image tokens only
    ids, pos, target = b.inputs()
    assert torch.equal(target[:, 4], b.pos[:, 5])  # <boi> is told where the first image token goes
    tgt, slots, mask = b.targets()
    assert (slots[mask] == IMAGE).all() and torch.equal(tgt[:, 4:10], b.ids[:, 5:11])


def test_prefix_and_unconditional():
    text = pad_text(SPACE, [[1, 2]], 3)
    assert prefix(SPACE, text)[0, -1] == SPACE.special("<boi>")
    assert (unconditional(SPACE, text) == SPACE.special("<pad>")).all()
    with pytest.raises(TesseraError, match="at most 3"):
        pad_text(SPACE, [[1, 2, 3, 4]], 3)


def test_orders_are_permutations():
    g = torch.Generator().manual_seed(0)
    raster, rand = make_orders("raster", 3, 4, 5, g), make_orders("random", 3, 4, 5, g)
    assert torch.equal(raster[0], torch.arange(20))
    assert all(torch.equal(r.sort().values, torch.arange(20)) for r in rand)
    assert not torch.equal(rand[0], rand[1])
    with pytest.raises(TesseraError, match="spiral"):
        make_orders("spiral", 1, 2, 2)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_world_tokenizer_round_trips_every_text_the_world_writes(seed):
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, 64)
    tok = WorldTokenizer()
    for text in (lang.caption(scene, rng), lang.partial_description(scene, rng), lang.question_answer(scene, rng)[0]):
        ids = tok.encode(text)
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.encode(tok.decode(ids)) == ids


def test_text_tokenizer_errors_and_serialisation():
    world = WorldTokenizer()
    with pytest.raises(PromptError, match="'hat'"):
        world.encode("a red circle with a hat")
    with pytest.raises(PromptError, match="empty"):
        world.encode("  ")
    classes = ClassTokenizer(["red circle", "blue star"])
    assert classes.encode("blue  star") == [1]
    with pytest.raises(TesseraError, match="unknown class 'green star'"):
        classes.encode("green star")
    bpe = BPETokenizer.train(["a cat on a mat", "a dog on a log", "two cats and a dog"] * 20, vocab_size=300)
    ids = bpe.encode("a cat and a dog")
    assert bpe.decode(ids).strip() == "a cat and a dog" and max(ids) < bpe.vocab_size
    for tok, text in ((world, "a star"), (classes, "blue star"), (bpe, "a dog")):
        again = from_dict(tok.to_dict())
        assert again.vocab_size == tok.vocab_size and again.encode(text) == tok.encode(text)
