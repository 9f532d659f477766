"""Issue 17: Z-Image / Lumina-2 (NextDiT), on the tiny model built from the host's own classes."""
import torch

from ja_reference_model import ReferenceConfig, install_reference
from ja_regions import HEIGHT, WIDTH
from ja_tiny import build, make_cond, patcher, sample

KW = dict(seed=0, steps=3, cfg=2.5, width=WIDTH, height=HEIGHT)


def test_the_reference_forward_is_the_hosts_forward_without_regions():
    """The test-only reference forward (ja_reference_nextdit) calls the model's modules in the host's order: without
    regions it samples what the host samples, on each host."""
    tiny = build("z_image")
    base = patcher(tiny)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    reference = install_reference(base, ReferenceConfig(), tiny.n_double, tiny.n_single)
    got, want = sample(reference, pos, neg, **KW), sample(base, pos, neg, **KW)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)  # the reference attends in float64
