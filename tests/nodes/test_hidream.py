"""HiDream I1: what only HiDream has (per-block Llama states, [image ; text] attention, wrapped block lists)."""
import pytest
import torch

from ja_nodes import run_node
from ja_tiny import build, make_cond, patcher, prompt_alone, sample, tiny_hidream_clip
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply

KW = dict(seed=0, steps=2, cfg=1.0, width=96, height=64)


def _encode(clip, text):
    return clip.encode_from_tokens_scheduled(clip.tokenize(text))  # what CLIPTextEncode outputs


def test_the_tiny_encoder_gives_t5_tokens_and_llama_states_of_every_layer():
    cond = _encode(tiny_hidream_clip(), "a red fox")
    tokens, options = cond[0]
    assert tokens.shape == (1, 128, 64)
    llama = options["conditioning_llama3"]
    assert llama.shape[:2] == (1, 3) and llama.shape[-1] == 64


def test_full_region_identity_with_the_real_encoder():
    tiny = build("hidream")
    clip = tiny_hidream_clip()
    base, region, neg = (_encode(clip, t) for t in ("a quiet harbour at dawn", "a red fox", ""))
    regions = run_node(JointAttentionRegion, region, torch.ones(1, 8, 8), 1.0)[0]
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    got = sample(model, base, neg, **KW)
    want = sample(patcher(tiny), prompt_alone(region, base), neg, **KW)
    assert (want - sample(patcher(tiny), base, neg, **KW)).abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
