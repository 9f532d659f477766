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


def as_prompt_alone(table, dim: int, n_txt: int, region_lens, source=None):
    """A copy of a position table (text ids, rope rows; the sequence along `dim`) in which each region text's rows
    are rows 0..T_r-1 of `source` (default: the table itself): the positions the text has as the prompt alone.

    Rows of a position table depend only on the position, so a copied row equals the row the host computes for that
    position. Rows are read from `source`, never from the copy being written (a region text longer than the prompt
    would otherwise read rows already renumbered). The prompt's rows and every row after the region texts are
    unchanged. The one rule every family's region texts follow (families/ say which table and where)."""
    source = table if source is None else source
    fixed = table.clone()
    start = n_txt
    for length in region_lens:
        fixed.narrow(dim, start, length).copy_(source.narrow(dim, 0, length))
        start += length
    return fixed
