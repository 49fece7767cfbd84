"""A LlamaGen-layout VQ checkpoint, built here from LlamaGen's published layout (not from tessera's modules),
imports into ConvVQ and decodes codes to the same pixels as a direct functional reading of that layout."""

import pytest
import torch
import torch.nn.functional as F
from conftest import one_line_error, run_cli

from tessera.errors import TesseraError
from tessera.tokenizer import build as tok
from tessera.tokenizer.llamagen import import_llamagen

CH, MULT, Z, NRES, N, D = 32, (1, 2), 32, 1, 16, 4


def llamagen_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights under LlamaGen VQ key names and shapes (encoder, decoder, quantizer, 1x1 convs)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def conv(name, cout, cin, k):
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (cin * k * k) ** -0.5
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.1

    def norm(name, c):
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(c, generator=g)

    def res(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cout, cin, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for part in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{part}", c, c, 1)

    levels = len(MULT)
    conv("encoder.conv_in", CH, 3, 3)
    cin = CH
    for i, m in enumerate(MULT):
        for j in range(NRES):
            res(f"encoder.conv_blocks.{i}.res.{j}", cin, CH * m)
            cin = CH * m
            if i == levels - 1:
                attn(f"encoder.conv_blocks.{i}.attn.{j}", cin)
        if i != levels - 1:
            conv(f"encoder.conv_blocks.{i}.downsample.conv", cin, cin, 3)
    res("encoder.mid.0", cin, cin), attn("encoder.mid.1", cin), res("encoder.mid.2", cin, cin)
    norm("encoder.norm_out", cin), conv("encoder.conv_out", Z, cin, 3)
    cin = CH * MULT[-1]
    conv("decoder.conv_in", cin, Z, 3)
    res("decoder.mid.0", cin, cin), attn("decoder.mid.1", cin), res("decoder.mid.2", cin, cin)
    for idx, i in enumerate(reversed(range(levels))):
        for j in range(NRES + 1):
            res(f"decoder.conv_blocks.{idx}.res.{j}", cin, CH * MULT[i])
            cin = CH * MULT[i]
            if idx == 0:
                attn(f"decoder.conv_blocks.{idx}.attn.{j}", cin)
        if idx != levels - 1:
            conv(f"decoder.conv_blocks.{idx}.upsample.conv", cin, cin, 3)
    norm("decoder.norm_out", cin), conv("decoder.conv_out", 3, cin, 3)
    sd["quantize.codebook_used"] = torch.zeros(65536)
    sd["quantize.embedding.weight"] = torch.randn(N, D, generator=g)
    conv("quant_conv", D, Z, 1), conv("post_quant_conv", Z, D, 1)
    return sd


def reference_decode(sd: dict[str, torch.Tensor], codes: torch.Tensor) -> torch.Tensor:
    """LlamaGen's decode_code, read directly off the state dict: GroupNorm(32), swish, nearest upsampling."""

    def c(x, name, pad):
        return F.conv2d(x, sd[f"{name}.weight"], sd[f"{name}.bias"], padding=pad)

    def gn(x, name):
        return F.group_norm(x, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-6)

    def res(x, name):
        h = c(F.silu(gn(x, f"{name}.norm1")), f"{name}.conv1", 1)
        h = c(F.silu(gn(h, f"{name}.norm2")), f"{name}.conv2", 1)
        return (c(x, f"{name}.nin_shortcut", 0) if f"{name}.nin_shortcut.weight" in sd else x) + h

    def attn(x, name):
        b, ch, hh, ww = x.shape
        n = gn(x, f"{name}.norm")
        q, k, v = (c(n, f"{name}.{p}", 0).reshape(b, ch, hh * ww) for p in ("q", "k", "v"))
        w = torch.softmax(torch.bmm(q.permute(0, 2, 1), k) * ch**-0.5, dim=2)
        return x + c(torch.bmm(v, w.permute(0, 2, 1)).reshape(b, ch, hh, ww), f"{name}.proj_out", 0)

    z = F.normalize(sd["quantize.embedding.weight"], dim=-1)[codes].permute(0, 3, 1, 2)
    x = c(c(z, "post_quant_conv", 0), "decoder.conv_in", 1)
    x = res(attn(res(x, "decoder.mid.0"), "decoder.mid.1"), "decoder.mid.2")
    for idx in range(len(MULT)):
        for j in range(NRES + 1):
            x = res(x, f"decoder.conv_blocks.{idx}.res.{j}")
            if f"decoder.conv_blocks.{idx}.attn.{j}.q.weight" in sd:
                x = attn(x, f"decoder.conv_blocks.{idx}.attn.{j}")
        if f"decoder.conv_blocks.{idx}.upsample.conv.weight" in sd:
            x = c(F.interpolate(x, scale_factor=2.0, mode="nearest"), f"decoder.conv_blocks.{idx}.upsample.conv", 1)
    return c(F.silu(gn(x, "decoder.norm_out")), "decoder.conv_out", 1)


@pytest.mark.parametrize("wrap", ["model", "ema", "janus"])
def test_import_decodes_like_llamagen(wrap, tmp_path):
    sd = llamagen_state()
    if wrap == "janus":
        payload = {f"gen_vision_model.{k}": v for k, v in sd.items()}
    else:
        payload = {wrap: sd, "steps": torch.tensor(5)} if wrap == "ema" else {"model": sd}
    torch.save(payload, tmp_path / "vq.pt")
    import_llamagen(tmp_path / "vq.pt", tmp_path / "out")
    model, cfg = tok.load(tmp_path / "out")
    assert (cfg.conv.ch, cfg.conv.ch_mult, cfg.conv.z_channels, cfg.conv.num_res_blocks) == (CH, MULT, Z, NRES)
    assert (cfg.conv.quantizer.codebook_size, cfg.conv.quantizer.dim) == (N, D)
    codes = torch.randint(0, N, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.decode(codes), reference_decode(sd, codes), atol=1e-4)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert model.encode(x).shape == (1, 8, 8)


def test_mismatched_or_missing_keys_are_named(tmp_path):
    sd = llamagen_state()
    sd.pop("decoder.conv_out.bias")
    sd["decoder.conv_in.weight"] = torch.zeros(1, 1, 3, 3)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(TesseraError) as err:
        import_llamagen(tmp_path / "bad.pt", tmp_path / "out")
    assert "decoder.conv_out.bias" in str(err.value) and "decoder.conv_in.weight" in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    one_line_error(run_cli("tokenizer", "import-llamagen", str(tmp_path / "junk.pt"), str(tmp_path / "o")), "junk.pt")


def test_files_without_levels_and_folders_of_other_files_are_refused(tmp_path):
    sd = llamagen_state()
    no_level = {k: v for k, v in sd.items() if not k.startswith("encoder.conv_blocks.1.res.0.conv1")}
    torch.save({"model": no_level}, tmp_path / "gap.pt")
    one_line_error(run_cli("tokenizer", "import-llamagen", str(tmp_path / "gap.pt"), str(tmp_path / "o")), "missing")
    no_levels = {k: v for k, v in sd.items() if not k.startswith("encoder.conv_blocks.")}
    torch.save({"model": no_levels}, tmp_path / "flat.pt")
    one_line_error(run_cli("tokenizer", "import-llamagen", str(tmp_path / "flat.pt"), str(tmp_path / "o")), "levels")
    torch.save({"model": sd}, tmp_path / "vq.pt")
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    refused = run_cli("tokenizer", "import-llamagen", str(tmp_path / "vq.pt"), str(mine))
    one_line_error(refused, "not a tessera checkpoint; refusing to replace it")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("photos")) == ["photos"]
    assert [p.name for p in mine.iterdir()] == ["holiday.jpg"]
    assert run_cli("tokenizer", "import-llamagen", str(tmp_path / "vq.pt"), str(tmp_path / "out")).returncode == 0
    again = run_cli("tokenizer", "import-llamagen", str(tmp_path / "vq.pt"), str(tmp_path / "out"))
    assert again.returncode == 0  # a tessera checkpoint may be replaced
