"""Region fixtures shared by the in-process tests."""
import torch

from ja_nodes import run_node
from ja_reference_model import ReferenceConfig
from ja_tiny import make_cond
from joint_attention_pack.attention.blocks import parse_blocks
from joint_attention_pack.nodes.regional import JointAttentionRegion

WIDTH, HEIGHT = 96, 64  # pixels: latent 12 x 8, token grid 4 x 6 (16 px cells)


def cell_masks(soft: bool):
    """Two masks constant on 16 px cells (so token masks are exact), overlapping in one column."""
    cells = torch.zeros(2, 4, 6)
    cells[0, :, :3] = 1.0
    cells[1, :, 2:5] = 1.0
    if soft:
        cells[0, :, 2] = 0.5
        cells[1, 1, 3] = 0.25
    pixels = cells.repeat_interleave(16, 1).repeat_interleave(16, 2)
    return pixels, cells.reshape(2, -1)


def on_token_grid(tiny, token_masks):
    """`cell_masks`' token masks (one per 16 px cell) on the tiny model's token grid: a family whose token is a 16 px
    latent cell that `sample()` draws at 1/8 of WIDTH x HEIGHT (Ideogram 4) has 2 x 2 tokens per mask cell."""
    import ja_families

    entry = ja_families.BY_NAME.get(tiny.family)
    k = entry.cell_tokens if entry is not None else 1
    if k == 1:
        return token_masks
    cells = token_masks.reshape(-1, 4, 6)
    return cells.repeat_interleave(k, 1).repeat_interleave(k, 2).reshape(cells.shape[0], -1)


def regions_for(tiny, pixel_masks, strengths):
    regions = None
    conds = []
    for i, strength in enumerate(strengths):
        cond = make_cond(tiny, seed=10 + i, n_tokens=5 + i)
        conds.append(cond[0][0][0])
        regions = run_node(JointAttentionRegion, cond, pixel_masks[i:i + 1], strength, regions)[0]
    return regions, conds


def regional_config(base, tiny, conds, token_masks, strengths, base_ratio=0.0, start=0.0, end=1.0, double="all",
                    single="all", image_attention="restricted", global_prompt="background", **extra):
    """The dense reference model's config for regions applied with these settings: the sigma window from the model's
    own schedule, the block lists as the node reads them; `extra` sets other features (gamma, capture)."""
    sampling = base.get_model_object("model_sampling")
    return ReferenceConfig(
        regions=conds, masks=on_token_grid(tiny, token_masks), strengths=strengths, base_ratio=base_ratio,
        sigma_start=float(sampling.percent_to_sigma(start)), sigma_end=float(sampling.percent_to_sigma(end)),
        double=parse_blocks(double, tiny.n_double), single=parse_blocks(single, tiny.n_single) if tiny.n_single else (),
        image_attention=image_attention, global_prompt=global_prompt, **extra)
