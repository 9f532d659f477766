"""Issue 33 in the real host: a sampling run whose attention calls take the dense-mask path (forced with
JOINT_ATTENTION_PATH, as a user debugging would) matches the independent reference model, CFG's negative half
(region texts isolated) included."""
import pytest
import torch

from ja_nodes import run_node
from ja_reference_model import install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import build, make_cond, patcher, sample
from joint_attention_pack.attention import paths
from joint_attention_pack.integration.options import find_dispatcher
from joint_attention_pack.integration.runtime import MEMORY
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_sampling_on_the_dense_path_matches_the_reference_model(family, monkeypatch):
    # The setting is read once, when the pack loads (ComfyUI started with it set): the process-wide selector is
    # made again here as the pack makes it then.
    monkeypatch.setenv(paths.PATH_ENV, "dense")
    monkeypatch.setattr(MEMORY, "paths", paths.PathSelector(MEMORY.registry))
    tiny = build(family)
    base = patcher(tiny)
    pixels, token_masks = cell_masks(True)
    strengths = [1.0, 1.5]
    regions, conds = regions_for(tiny, pixels, strengths)
    model = run_node(JointAttentionRegionalApply, base, regions, 0.3, 0.0, 0.6, "all", "all" if tiny.n_single else "none",
                     "restricted", "background")[0]
    dispatcher = find_dispatcher(model.model_options["transformer_options"])
    assert dispatcher.paths.force == paths.DENSE
    calls = []
    run = dispatcher.paths.candidates[paths.DENSE].run
    monkeypatch.setattr(dispatcher.paths.candidates[paths.DENSE], "run", lambda *a: calls.append(1) or run(*a))
    config = regional_config(base, tiny, conds, token_masks, strengths, 0.3, 0.0, 0.6)
    reference = install_reference(base, config, tiny.n_double, tiny.n_single)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
    got = sample(model, pos, neg, **kw)
    want = sample(reference, pos, neg, **kw)
    assert calls  # the calls took the dense path
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
