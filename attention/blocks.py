"""Block selections typed by users: `all`, `none`, `odd`, `even`, `0-9,12`."""
from __future__ import annotations

import re

# Up to 6 digits per number: no model has a million blocks, and int() of a 5,000-digit string raises.
_ITEM = re.compile(r"^\s*(\d{1,6})\s*(?:-\s*(\d{1,6})\s*)?$")
MAX_TEXT = 1000
_WORDS = {
    "all": lambda n: range(n),
    "none": lambda n: range(0),
    "": lambda n: range(0),
    "odd": lambda n: range(1, n, 2),
    "even": lambda n: range(0, n, 2),
}


class BlockSelectionError(ValueError):
    pass


def parse_blocks(text: str, count: int, what: str = "blocks", first: int = 0) -> frozenset:
    """Indices selected by `text` among `count` blocks numbered from `first`.

    Raises BlockSelectionError naming the valid range when the text does not parse or
    names blocks the model does not have.
    """
    cleaned = (text or "").strip().lower()
    last = first + count - 1
    if len(cleaned) > MAX_TEXT:
        raise BlockSelectionError(f"{what}: {len(cleaned)} characters; write at most {MAX_TEXT}, e.g. 0-9,12")
    valid = f"{first}-{last}" if count else "none (the model has no such blocks)"
    if cleaned in _WORDS:
        return frozenset(first + i for i in _WORDS[cleaned](count))
    chosen = set()
    for item in cleaned.split(","):
        match = _ITEM.match(item)
        if not match:
            shown = item.strip() if len(item.strip()) <= 40 else item.strip()[:40] + "..."
            raise BlockSelectionError(
                f"{what}: cannot read {shown!r}; use all, none, odd, even or "
                f"numbers and ranges like 0-9,12 within {valid}"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise BlockSelectionError(f"{what}: range {item.strip()!r} runs backwards; write it as {hi}-{lo}")
        if lo < first or hi > last:
            raise BlockSelectionError(
                f"{what}: {item.strip()!r} is outside this model's blocks; valid numbers are {valid}"
            )
        chosen.update(range(lo, hi + 1))
    return frozenset(chosen)


def parse_token_range(text: str, what: str = "token_range"):
    """`a-b` (inclusive) over text positions, or empty for all. Returns (a, b+1) or None."""
    cleaned = (text or "").strip()
    if not cleaned:
        return None
    match = _ITEM.match(cleaned) if len(cleaned) <= MAX_TEXT else None
    if not match:
        shown = cleaned if len(cleaned) <= 40 else cleaned[:40] + "..."
        raise BlockSelectionError(f"{what}: cannot read {shown!r}; write a-b with numbers of at most 6 digits, e.g. 0-76, or leave it empty for all tokens")
    lo = int(match.group(1))
    hi = int(match.group(2)) if match.group(2) is not None else lo
    if hi < lo:
        raise BlockSelectionError(f"{what}: range {cleaned!r} runs backwards; write it as {hi}-{lo}")
    return lo, hi + 1
