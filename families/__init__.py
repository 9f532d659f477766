"""The model families the pack supports, one module each in this folder, found here by their `Family` subclass.

Adding a family is its module (a `Family` subclass naming the exact model classes it has been proven on), its entry
in the tests' family list and its example workflow; nothing outside this folder changes.
"""
from __future__ import annotations

import importlib
import pkgutil

import comfy.model_base

from .base import Family, RefusedForward, UnsupportedModel

__all__ = ["FAMILIES", "REFUSED", "Family", "RefusedForward", "UnsupportedModel", "block_counts", "family_of_base",
           "model_family", "named", "support_table"]


def _discover() -> tuple:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += [cls() for cls in vars(module).values()
                  if isinstance(cls, type) and issubclass(cls, Family) and cls is not Family
                  and cls.__module__ == module.__name__]
    return tuple(sorted(found, key=lambda f: f.table_order))


_ENTRIES = _discover()
FAMILIES = tuple(f for f in _ENTRIES if not f.refused)  # the families the pack supports
REFUSED = tuple(f for f in _ENTRIES if f.refused)  # joint-attention families refused by name, each with its reason
_BY_NAME = {f.name: f for f in FAMILIES}
_BY_CLASS = {cls: f for f in FAMILIES for cls in f.classes}
_REFUSED_BY_CLASS = {cls: f for f in REFUSED for cls in f.classes}


def named(name: str) -> Family:
    return _BY_NAME[name]


def family_of_base(base):
    """The family of a `comfy.model_base` instance, by its exact class; None for any other class (a subclass of a
    supported class included: it has not been proven)."""
    return _BY_CLASS.get(type(base).__name__)


def _supported_models() -> str:
    return ", ".join(f.models for f in FAMILIES)


def model_family(model_patcher) -> Family:
    base = model_patcher.model
    family = family_of_base(base)
    refused = _REFUSED_BY_CLASS.get(type(base).__name__)
    if refused is not None:
        raise UnsupportedModel(f"{type(base).__name__!r} ({refused.models}) is not supported by this pack: "
                               f"{refused.refused}; the pack supports {_supported_models()}")
    if family is None:
        parents = [f for f in FAMILIES for cls in type(base).__mro__[1:] if cls.__name__ in f.classes
                   and getattr(comfy.model_base, cls.__name__, None) is cls]
        if parents:
            raise UnsupportedModel(
                f"{type(base).__name__!r} is a model built on {parents[0].models} ({type(base).__mro__[1].__name__}), "
                "which this pack has not been proven on, so it is not used as its parent; the pack supports "
                f"{_supported_models()}")
        raise UnsupportedModel(
            f"expected a joint-attention model ({_supported_models()}), got {type(base).__name__!r}; connect the MODEL "
            "output of a checkpoint/UNET loader of one of them")
    family.check_model(model_patcher)
    return family


def block_counts(model_patcher) -> tuple:
    family = model_family(model_patcher)
    return family.block_counts(family.diffusion_model(model_patcher))


# The README's model-support table (checked by tests/nodes/test_docs.py): family x feature, with how each family's
# blocks are numbered and where reference images go.
FEATURES = ("regions", "TACA", "text scale", "attention maps", "ConceptAttention", "reference images")


def support_table() -> str:
    """The supported families, family x feature; then the refused families, each with its reason."""
    lines = ["| model | " + " | ".join(FEATURES) + " | blocks | reference image tokens |",
             "|---|" + "---|" * (len(FEATURES) + 2)]
    for f in FAMILIES:
        unsupported = {"ConceptAttention": not f.concepts, "reference images": not f.reference_images}
        marks = ["no" if unsupported.get(feature) else "yes" for feature in FEATURES]
        lines.append(f"| {f.models} | " + " | ".join(marks) + f" | {f.blocks_doc} | {f.references_doc} |")
    if REFUSED:
        lines += ["", "Refused by name (a node given one of these stops with the reason):", "",
                  "| model | ComfyUI model class | why the pack refuses it |", "|---|---|---|"]
        lines += [f"| {f.models} | {', '.join(f'`{c}`' for c in f.classes)} | {f.refused} |" for f in REFUSED]
    return "\n".join(lines)
