"""Chroma Radiance (issue 30): a family of its own, never taken as Chroma. Newer checkpoints number text positions
along rope axis 0 inside the model's forward, which offers no `post_input` patch; region texts must still read as the
prompt alone. Here: the rope table the blocks get, row by row (the full-region identity and the other scenarios run
from the family list)."""
import pytest
import torch

from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.nodes.regional import JointAttentionRegion, JointAttentionRegionalApply


def _rope_tables_seen(tiny, monkeypatch, region_tokens=(9, 12)):
    """(the rope tables the pack's double block 0 passed on, the host's own tables) of one regional run."""
    from joint_attention_pack.integration import blocks

    seen, original = [], blocks.BlockPatch.__call__

    def spy(self, args, extra):
        if self.ref.kind == "double" and self.ref.index == 0:
            def keep(block_args):
                seen.append((block_args["pe"].clone(), args["pe"].clone()))
                return extra["original_block"](block_args)
            return original(self, args, {**extra, "original_block": keep})
        return original(self, args, extra)

    monkeypatch.setattr(blocks.BlockPatch, "__call__", spy)
    regions = None
    for seed, n in zip((5, 6), region_tokens):
        regions = run_node(JointAttentionRegion, make_cond(tiny, seed=seed, n_tokens=n), torch.ones(1, HEIGHT, WIDTH),
                           1.0, regions)[0]
    model = run_node(JointAttentionRegionalApply, patcher(tiny), regions, 0.0, 0.0, 1.0, "all", "all", "restricted",
                     "background")[0]
    sample(model, make_cond(tiny, seed=1, n_tokens=7), make_cond(tiny, seed=2), steps=1, cfg=2.0, width=WIDTH,
           height=HEIGHT)
    return seen


def test_sequential_text_ids_give_region_texts_the_prompt_alone_rows(monkeypatch):
    tiny = build("chroma_radiance", sequential_text_ids=True)
    if not getattr(tiny.patcher.model.diffusion_model.params, "use_sequential_txt_ids", False):
        pytest.skip("this host's Chroma Radiance has no sequential text ids")
    seen = _rope_tables_seen(tiny, monkeypatch)
    assert seen
    fixed, host = seen[0]
    n_txt, lens = 7, (9, 12)
    assert not torch.equal(fixed, host)  # the host numbered the region texts on from the prompt
    start = n_txt
    for length in lens:
        torch.testing.assert_close(fixed[:, :, start:start + length], host[:, :, :length], atol=0, rtol=0)
        start += length
    torch.testing.assert_close(fixed[:, :, :n_txt], host[:, :, :n_txt], atol=0, rtol=0)  # the prompt's rows
    torch.testing.assert_close(fixed[:, :, start:], host[:, :, start:], atol=0, rtol=0)  # the image's rows


def test_zero_text_ids_leave_the_rope_table_as_the_host_made_it(monkeypatch):
    tiny = build("chroma_radiance", sequential_text_ids=False)
    seen = _rope_tables_seen(tiny, monkeypatch)
    assert seen and all(torch.equal(fixed, host) for fixed, host in seen)
