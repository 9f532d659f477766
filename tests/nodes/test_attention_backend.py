"""Issue 27: the one attention-override slot shared with attention backends.

ComfyUI 0.33's core node Model Attention Backend (`ModelAttentionBackend`) writes an override into
`transformer_options["optimized_attention_override"]`, the slot the pack's attention lives in, and that override
ignores the function it is given: it computes attention with the kernel the user chose. Placed before the pack's
nodes it used to drop every planned call silently (a plain image); placed after, it replaced the pack's override.
Now, for every family and every feature, in either order, the image is the pack's own (checked against the run
without the backend, which the family suites check against the dense reference, and here against the reference
model for regions, TACA and capture), and the backend's kernel runs every call the pack leaves alone.

Another pack's override that computes attention itself (`ForeignOverride(chain=False)`) is the same kind of thing on
every host: before the pack's nodes the pack acts; after them the run stops with the reach error, which names the
override in use.
"""
import pytest
import torch

from ja_compose import foreign_override
from ja_families import family_params
from ja_nodes import run_node
from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH, cell_masks, regional_config, regions_for
from ja_tiny import make_cond, patcher, sample
from joint_attention_pack.integration import reach
from joint_attention_pack.nodes.guidance import JointAttentionTACA, JointAttentionTextScale
from joint_attention_pack.nodes.maps import JointAttentionCapture
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply

FEATURES = ["regions", "taca", "text_scale", "capture"]
KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)
START, END = 0.0, 0.6


def _core_backend_node():
    try:
        from comfy_extras.nodes_model_advanced import ModelAttentionBackend
    except ImportError:
        return None
    return ModelAttentionBackend


class Kernel:
    """Counts the calls that reach an attention kernel (the backend's), passing each on unchanged."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.kernel(*args, **kwargs)


# The node's choices and the names core registers their kernels under.
BACKENDS = {"pytorch attention": "pytorch", "comfy kitchen attention": "comfy_kitchen_int8"}


def _core_backend(model, monkeypatch, choice):
    """`model` through core's Model Attention Backend (`choice`), with a counter on the kernel it chose."""
    node = _core_backend_node()
    import comfy.ldm.modules.attention as attention

    counted = Kernel(attention.get_attention_function(BACKENDS[choice]))
    monkeypatch.setitem(attention.REGISTERED_ATTENTION_FUNCTIONS, BACKENDS[choice], counted)
    return run_node(node, model, choice)[0], counted


def _feature(family, tiny, feature):
    """(apply(model) -> patched model [, capture handle], reference config or None)."""
    single = "all" if tiny.n_single else "none"
    n_single = range(tiny.n_single)
    if feature == "regions":
        pixels, token_masks = cell_masks(True)
        strengths = [1.0, 1.5]
        regions, conds = regions_for(tiny, pixels, strengths)

        def apply(model):
            return run_node(JointAttentionRegionalApply, model, regions, 0.2, START, END, "all", single, "restricted",
                            "background")[0], None

        if family.latent_px != 8:  # sample() draws latents at 1/8 of the image: FLUX.2 (16 px cells, patch 1) makes
            return apply, None    # 8 x 12 tokens here, not cell_masks' 4 x 6 (its own suites have its regions)

        def config(sampling):
            return regional_config(tiny.patcher, tiny, conds, token_masks, strengths, 0.2, START, END, "all", single)
        return apply, config
    if feature == "taca":
        # On in the first two of the 3 steps, whatever the family's sigma shift: the backend runs the last.
        threshold = float(tiny.patcher.get_model_object("model_sampling").percent_to_sigma(0.4))

        def apply(model):
            return run_node(JointAttentionTACA, model, 3.0, threshold, "both", "all", single)[0], None

        def config(sampling):
            return ReferenceConfig(gamma=3.0, gamma_threshold=threshold, gamma_rows="both",
                                   gamma_double=range(tiny.n_double), gamma_single=n_single)
        return apply, config
    if feature == "text_scale":
        def apply(model):
            return run_node(JointAttentionTextScale, model, "0,1", 1.7, "scale", 0.0, 0.7)[0], None
        return apply, None

    def apply(model):
        return run_node(JointAttentionCapture, model, "all", single, 0.0, 0.5)[:2]

    def config(sampling):
        return ReferenceConfig(capture_double=range(tiny.n_double), capture_single=n_single,
                               capture_start=float(sampling.percent_to_sigma(0.0)),
                               capture_end=float(sampling.percent_to_sigma(0.5)))
    return apply, config


def _run(model, handle, pos, neg):
    latent = sample(model, pos, neg, **KW)
    return latent, (handle.take()["maps"] if handle is not None else None)


@pytest.mark.works_with("core `ModelAttentionBackend` (0.33+), before or after the pack's nodes",
                        "Apply Regional Attention, TACA, Text Scale per Block, Attention Capture",
                        "exact; the backend's kernel runs the calls the pack leaves alone")
@pytest.mark.parametrize("choice", list(BACKENDS))
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("family", family_params("attention_slot"))
def test_core_attention_backend_in_either_order(family, feature, choice, monkeypatch):
    node = _core_backend_node()
    if node is None:
        pytest.skip("this ComfyUI has no ModelAttentionBackend node (added in 0.33)")
    if choice not in node.INPUT_TYPES()["required"]["attention"][0]:
        # Comfy Kitchen's int8 attention (also what `--use-ck-attention` selects) needs a CUDA build of comfy-kitchen
        # with attention support; without it the node does not offer it and the flag exits at start-up.
        pytest.skip(f"{choice!r} is not available on this machine (comfy-kitchen without int8 attention)")
    tiny = family.build()
    base = patcher(tiny)
    apply, config = _feature(family, tiny, feature)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    alone = _run(*apply(base), pos, neg)
    if feature != "capture":  # capture leaves the image alone: its maps are what a lost capture would miss
        plain = sample(base, pos, neg, **KW)
        assert (alone[0] - plain).abs().max() > 1e-4  # the feature changes the image, so losing it would show

    backend_first, kernel = _core_backend(base, monkeypatch, choice)
    got_before = _run(*apply(backend_first), pos, neg)
    assert kernel.calls > 0  # the backend ran the calls the pack leaves alone (uncond rows, steps out of window)

    patched, handle = apply(base)
    pack_first, kernel_after = _core_backend(patched, monkeypatch, choice)
    got_after = _run(pack_first, handle, pos, neg)
    assert kernel_after.calls > 0

    for got in (got_before, got_after):
        tol = family.identity_tol  # another kernel on the calls the pack leaves alone: fp32 rounding only
        torch.testing.assert_close(got[0], alone[0], atol=tol, rtol=tol)
        if alone[1] is not None:
            torch.testing.assert_close(got[1], alone[1], atol=1e-6, rtol=1e-6)
    if config is not None:
        reference_config = config(base.get_model_object("model_sampling"))
        want = sample(install_reference(base, reference_config, tiny.n_double, tiny.n_single), pos, neg, **KW)
        torch.testing.assert_close(got_before[0], want, atol=1e-4, rtol=1e-4)
        if reference_config.capture_sum is not None:
            torch.testing.assert_close(got_before[1], reference_config.captured_maps(), atol=1e-5, rtol=1e-5)


@pytest.mark.works_with("another pack's override that computes attention itself, applied before the pack's nodes",
                        "Apply Regional Attention, TACA, Text Scale per Block, Attention Capture",
                        "exact; applied after: refused with an error naming it")
@pytest.mark.parametrize("feature", FEATURES)
@pytest.mark.parametrize("family", family_params("attention_slot"))
def test_replacing_override_before_the_pack_is_used_around_it(family, feature):
    tiny = family.build()
    base = patcher(tiny)
    apply, _ = _feature(family, tiny, feature)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    alone = _run(*apply(base), pos, neg)
    before, override = foreign_override(base, chain=False)
    got = _run(*apply(before), pos, neg)
    assert override.calls > 0
    tol = family.identity_tol  # another kernel on the calls the pack leaves alone: fp32 rounding only
    torch.testing.assert_close(got[0], alone[0], atol=tol, rtol=tol)
    if alone[1] is not None:
        torch.testing.assert_close(got[1], alone[1], atol=1e-6, rtol=1e-6)
    patched, _ = apply(base)
    after, override = foreign_override(patched, chain=False)
    if feature == "text_scale":  # acts in the block patches, before attention: it survives any attention override
        torch.testing.assert_close(sample(after, pos, neg, **KW), alone[0], atol=tol, rtol=tol)
        return
    with pytest.raises(reach.PackNotReached, match=r"override in use is the attention override 'ForeignOverride'"):
        sample(after, pos, neg, **KW)
