"""Where text, region-text, image and reference tokens sit in a joint sequence."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenLayout:
    """`[T0 base text ; T1..Tn region texts ; I image ; F reference]` along the sequence.

    Lengths are read from tensors at run time (never hard-coded 256/512).
    `grid` is the image token grid (rows, cols) of the generated image, after
    ComfyUI's padding to whole patches.
    """

    n_txt: int
    n_img: int
    n_ref: int = 0
    region_lens: tuple[int, ...] = ()
    grid: tuple[int, int] = (0, 0)

    @property
    def n_regions_tokens(self) -> int:
        return sum(self.region_lens)

    @property
    def n_context(self) -> int:
        """Tokens in the text stream: base text plus appended region texts."""
        return self.n_txt + self.n_regions_tokens

    @property
    def total(self) -> int:
        return self.n_context + self.n_img + self.n_ref

    @property
    def txt(self) -> slice:
        return slice(0, self.n_txt)

    def region(self, r: int) -> slice:
        start = self.n_txt + sum(self.region_lens[:r])
        return slice(start, start + self.region_lens[r])

    @property
    def regions(self) -> slice:
        return slice(self.n_txt, self.n_context)

    @property
    def img(self) -> slice:
        return slice(self.n_context, self.n_context + self.n_img)

    @property
    def ref(self) -> slice:
        return slice(self.n_context + self.n_img, self.total)

    @property
    def visual(self) -> slice:
        """Image and reference tokens together (contiguous)."""
        return slice(self.n_context, self.total)
