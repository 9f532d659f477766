"""LongCat-Image: FLUX's blocks with text from Qwen2.5-VL, refused by name.

Its model class (`LongCatImage(Flux)`) shifts the image's rope positions by the context's length in its own
`_apply_model`, after the pack's APPLY_MODEL wrapper has appended the region texts: the image would sit after the
prompt and every region text instead of after the prompt, measured silently wrong (7e-2 on the full-region identity).
Handing it the prompt's length instead (`rope_options`, which it only sets by default) fixes the image's positions,
but a region text then reads as the prompt alone only when it has the prompt's length, which the test harness does not
give yet; until that is proven the family is refused.
"""
from __future__ import annotations

from .base import Family


class LongCatImage(Family):
    name = "longcat_image"
    models = "LongCat-Image"
    table_order = 50
    classes = ("LongCatImage",)
    refused = ("its model shifts the image's rope positions by the length of the whole text context inside its own "
               "forward, after region texts are appended, so regions would move the image; refused until the pack "
               "proves a fix")
