"""Call specs as the pack's features contribute them, for tests that drive the executor directly."""
from joint_attention_pack.attention.capture import CaptureObserver
from joint_attention_pack.attention.joint import CallSpec
from joint_attention_pack.attention.taca import with_gamma


def call_spec(texts_unread=True, structure=None, gamma=1.0, sink=None, step=None) -> CallSpec:
    """What RegionalModifier (region texts placed, its plan), TacaModifier (`gamma`) and CaptureModifier (`sink` at
    `step`) put in a spec: one place, so a test reads as the features it combines."""
    observers = (CaptureObserver(sink, step),) if sink is not None else ()
    return CallSpec(texts_unread=texts_unread, structure=structure, modifiers=with_gamma((), gamma), observers=observers)


def gamma_of(spec: CallSpec) -> float:
    """TACA's gamma in `spec` (1 without one), for the dense reference."""
    return next((m.gamma for m in spec.modifiers if hasattr(m, "gamma")), 1.0)
