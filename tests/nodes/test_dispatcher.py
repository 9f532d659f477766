"""Issue 2: the dispatcher inside the real ComfyUI host, on tiny real models."""
import pytest
import torch

from ja_families import family_params
from ja_nodes import run_node
from ja_tiny import build, latent_cell, make_cond, patcher, sample
from joint_attention_pack.attention.dispatcher import Modifier
from joint_attention_pack.integration.install import install


class Recorder(Modifier):
    """Records what the dispatcher knows at each attention call; changes nothing."""

    key = "recorder"

    def __init__(self):
        self.calls = []
        self.blocks = []

    def contribute(self, state, block, row_kind, spec, item=0):
        self.calls.append((block, state.call_layout, row_kind))

    def before_block(self, state, block, stream):
        self.blocks.append(block)
        return None


def _sample_pair(tiny, model, cfg, batch):
    pos = make_cond(tiny, seed=1)
    neg = make_cond(tiny, seed=2)
    return sample(model, pos, neg, seed=0, steps=3, cfg=cfg, batch=batch)


@pytest.mark.parametrize("family", family_params("empty_dispatcher"))
@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_empty_dispatcher_is_bit_identical(family, cfg):
    tiny = family.build()
    base = patcher(tiny)
    expected = _sample_pair(tiny, base, cfg, batch=2)
    patched = install(base, Modifier())
    got = _sample_pair(tiny, patched, cfg, batch=2)
    assert torch.equal(expected, got)


def _record(tiny, model_in, **sample_kw):
    rec = Recorder()
    model = install(model_in, rec)
    pos = make_cond(tiny, seed=1, **sample_kw.pop("cond_kw", {}))
    sample(model, pos, make_cond(tiny, seed=2), seed=0, steps=1, cfg=1.0, **sample_kw)
    return rec


@pytest.mark.parametrize("family", family_params("block_numbering"))
def test_blocks_are_numbered_doubles_then_singles_and_attn2_left_alone(family):
    """FLUX: double blocks, then single blocks numbered on after them; SD3 / Qwen-Image: joint blocks, numbered as
    double blocks."""
    tiny = family.build()
    rec = _record(tiny, patcher(tiny))
    n_double, n_single = tiny.n_double, tiny.n_single
    expected = [("double", i, i) for i in range(n_double)] + [("single", i, n_double + i) for i in range(n_single)]
    seen = [(b.kind, b.index, b.number) for b in rec.blocks]
    assert seen == expected  # one forward (1 step, cfg 1): blocks in order
    # Only joint calls reach modifiers; SD3.5-M's image-only attn2 calls are told apart by length.
    assert [(b.kind, b.index) for b, _, _ in rec.calls] == [(k, i) for k, i, _ in expected]


@pytest.mark.parametrize("family", family_params("layout_slices"))
def test_layout_slices(family):
    tiny = family.build()
    width, height = 40, 24  # pixels / 8 = latent 5 x 3: odd sizes are padded to whole patches
    rec = _record(tiny, patcher(tiny), width=width, height=height, cond_kw={"n_tokens": 7})
    layout = rec.calls[0][1]
    patch = getattr(patcher(tiny).model.diffusion_model, "patch_size", 2)
    patch = patch[-1] if isinstance(patch, (list, tuple)) else patch  # JoyImage: (frames, rows, cols)
    cell = latent_cell(tiny)
    rows, cols = -(-(height // cell) // patch), -(-(width // cell) // patch)
    assert layout.grid == (rows, cols)
    assert layout.n_img == rows * cols
    assert layout.n_ref == 0
    assert layout.txt == slice(0, layout.n_txt) and layout.img.start == layout.n_txt
    assert layout.n_txt == rec.calls[0][1].n_context


def test_kontext_reference_tokens_are_sliced():
    tiny = build("flux")
    ref = torch.randn(1, tiny.latent_channels, 4, 6)
    rec = _record(tiny, patcher(tiny), cond_kw={"ref_latents": [ref]})
    layout = rec.calls[0][1]
    assert layout.n_ref == (4 // 2) * (6 // 2)
    assert layout.ref == slice(layout.img.stop, layout.total)


def test_preexisting_override_called_once_per_attention_call():
    from joint_attention_pack.nodes.guidance import JointAttentionTACA

    tiny = build("flux")
    counted = patcher(tiny).clone()
    calls = []

    def counting_override(func, *args, **kwargs):
        calls.append(1)
        return func(*args, **kwargs)

    counted.model_options["transformer_options"]["optimized_attention_override"] = counting_override
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    plain = sample(counted, pos, neg, seed=0, steps=2, cfg=2.0)
    n_plain = len(calls)
    calls.clear()
    taca = run_node(JointAttentionTACA, counted, 2.0, 0.0, "both", "all", "all")[0]
    scaled = sample(taca, pos, neg, seed=0, steps=2, cfg=2.0)
    assert n_plain > 0 and len(calls) == n_plain
    assert not torch.equal(plain, scaled)  # the pack's attention ran inside the chained override


def test_second_node_extends_the_same_dispatcher_and_input_model_is_untouched():
    from joint_attention_pack.integration.options import find_dispatcher
    from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale

    tiny = build("flux")
    base = patcher(tiny)
    before = dict(base.model_options["transformer_options"])
    one = run_node(JointAttentionTACA, base, 1.5, 0.0, "both", "all", "all")[0]
    two = run_node(JointAttentionTextScale, one, "0", 1.5, "scale", 0.0, 1.0)[0]
    d1 = find_dispatcher(one.model_options["transformer_options"])
    d2 = find_dispatcher(two.model_options["transformer_options"])
    assert [m.key for m in d1.modifiers] == ["taca"]
    assert [m.key for m in d2.modifiers] == ["taca", "text_scale"]
    assert two.model_options["transformer_options"]["optimized_attention_override"] is d2
    assert d2.previous is None  # not nested inside the first dispatcher
    assert base.model_options["transformer_options"] == before
    assert find_dispatcher(base.model_options["transformer_options"]) is None


def test_calls_with_more_keys_than_queries_are_refused_not_silently_wrong():
    """A node that appends cached keys in attention (0.29's FluxKVCache via attn1_patch) would shift the
    pack's layout: with a feature active in the call, the pack stops with an error instead."""
    from joint_attention_pack.attention.forward import BlockRef, ForwardState
    from joint_attention_pack.attention.gate import Gate
    from joint_attention_pack.attention.taca import TacaModifier
    from joint_attention_pack.integration.override import BLOCK_KEY, FORWARD_KEY, AttentionOverride

    override = AttentionOverride([TacaModifier(1.5, "both", Gate(frozenset({0}), frozenset()))])
    state = ForwardState("flux", 4, 4, (), 6, (2, 3), (0,), 1.0, 1, 0)
    block = BlockRef("double", 0, 0)
    q = torch.randn(1, 2, 10, 8)
    options = {FORWARD_KEY: state, BLOCK_KEY: block}

    def host(q, k, v, heads, **kwargs):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, q.shape[2], -1)

    out = override(host, q, q, q, 2, skip_reshape=True, transformer_options=options)  # same lengths: the pack acts
    assert out.shape == (1, 10, 16)
    longer = torch.randn(1, 2, 13, 8)
    with pytest.raises(ValueError, match=r"attends 13 keys with 10 queries"):
        override(host, q, longer, longer, 2, skip_reshape=True, transformer_options=options)
