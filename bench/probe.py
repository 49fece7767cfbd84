"""Is an object's shape (and colour) in a reading model's image-token states? Linear probes, one per layer, on the
state at each object's bottom-centre cell (which has seen every row of it before), fitted on 70 % of the objects of
600 random scenes and scored on the rest; and, for comparison, on means over the cells of the object's box (its
patches as they come in, pooled by hand) of the inputs (what the first block reads: a token's embedding, its code
vector's projection, its positions and the question's mean word) and of the codes alone (the first two). Chance:
shape 0.2, colour 0.125.

    python bench/probe.py --ckpt CKPT [--ckpt CKPT ...]
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from tessera.model.bundle import load
from tessera.sequence.layouts import NO_POS, image_prefix
from tessera.world.render import render_image
from tessera.world.scene import COLOURS, SHAPES, sample_scene

QUESTION = "what shape is the object?"


@torch.no_grad()
def features(bundle, scenes, batch: int = 50) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Per object: its states (the first block's input, each block's output) at its bottom-centre cell, and the means
    over its box of the inputs and of the codes' embeddings alone."""
    model, states = bundle.model, {}
    hooks = [layer.register_forward_hook(lambda m, i, o, k=k: states.__setitem__(k + 1, o))
             for k, layer in enumerate(model.layers)]  # fmt: skip
    hooks.append(model.layers[0].register_forward_pre_hook(lambda m, i: states.__setitem__(0, i[0])))  # the inputs
    rows, shapes, colours = [], [], []
    for i in range(0, len(scenes), batch):
        chunk = scenes[i : i + batch]
        codes = bundle.encode_images(np.stack([render_image(s) for s in chunk]))  # (B, h, w)
        prompt = image_prefix(bundle.space, bundle.encode_questions([QUESTION] * len(chunk)), codes)
        ids, pos = prompt.ids, prompt.pos  # the whole prompt, <sep> included, as `ask` reads it
        model(ids, pos, torch.cat([pos[:, 1:], torch.full_like(pos[:, :1], NO_POS)], dim=1))
        layers = [states[k] for k in range(len(model.layers) + 1)]  # (B, T, D) each: inputs, then every block's
        codes_in = model.tok_embeddings(ids)  # (B, T, D): what each token's code is, without positions or words
        if model.code_in is not None:
            code = (ids - model.image_start).clamp(min=0)
            codes_in = codes_in + F.embedding(code, model.code_in(model.code_vectors))
        h, w = codes.shape[1:]
        first = ids.shape[1] - h * w - 2  # the image's first token: <eoi> and <sep> follow it
        for j, scene in enumerate(chunk):
            for o in scene.objects:
                x1, y1, x2, y2 = (int(v / bundle.cfg.canvas * n) for v, n in zip(o.box, (w, h, w, h), strict=True))
                bottom, middle = min(y2, h - 1), min((x1 + x2) // 2, w - 1)
                box = [
                    first + r * w + c
                    for r in range(max(y1, 0), bottom + 1)
                    for c in range(max(x1, 0), min(x2, w - 1) + 1)
                ]
                at = first + bottom * w + middle
                rows.append(
                    [layer[j, at].numpy() for layer in layers]
                    + [layers[0][j, box].mean(0).numpy(), codes_in[j, box].mean(0).numpy()]
                )
                shapes.append(SHAPES.index(o.shape))
                colours.append(COLOURS.index(o.colour))
    for hook in hooks:
        hook.remove()
    return rows, shapes, colours


def probe(x: np.ndarray, y: list[int], classes: int) -> float:
    """Held-out accuracy of a linear classifier (L2-regularised, fitted by L-BFGS) on standardised features."""
    x = torch.tensor(x)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y, cut = torch.tensor(y), int(0.7 * len(y))
    linear = torch.nn.Linear(x.shape[1], classes)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=300)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(x[:cut]), y[:cut]) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (linear(x[cut:]).argmax(1) == y[cut:]).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", action="append", required=True, help="a model checkpoint (repeatable)")
    parser.add_argument("--scenes", type=int, default=600)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    scenes = [sample_scene(rng, 64) for _ in range(args.scenes)]
    for ckpt in args.ckpt:
        bundle = load(ckpt)
        rows, shapes, colours = features(bundle, scenes)
        names = [
            "inputs",
            *(f"block {k + 1}" for k in range(len(bundle.model.layers))),
            "box mean of inputs",
            "box mean of codes",
        ]
        print(f"{ckpt} ({len(rows)} objects)")
        for k, name in enumerate(names):
            x = np.stack([r[k] for r in rows])
            print(
                f"  {name:20s} shape {probe(x, shapes, len(SHAPES)):.3f}  colour {probe(x, colours, len(COLOURS)):.3f}"
            )


if __name__ == "__main__":
    main()
