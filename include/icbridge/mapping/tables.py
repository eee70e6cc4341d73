"""A range's lines as fields: the split rule (trim, CR/TAB) and the flat tables the column
path reads a column at a time.
"""

from __future__ import annotations

import operator
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress, repeat
from operator import methodcaller, ne, sub

from icbridge.layouts.bif import tuple_getter


def split_line(line: str) -> list[str]:
    """Split on '|' and trim every value of blanks (``str.strip``: ASCII and Unicode white
    space, NBSP included, one rule for every value and the trailer); CR and TAB become a space
    (the BIF text rule) before that."""
    if "\t" in line or "\r" in line:
        line = line.replace("\t", " ").replace("\r", " ")
    if "| " in line or " |" in line or line[:1] == " " or line[-1:] == " " or not line.isascii():
        return [f.strip() for f in line.split("|")]
    return line.split("|")  # the common case: nothing to trim


class Table:
    """The fields of a range's lines, all in one flat list, `width` to a line: a column is
    one slice, and there is no list object per line."""

    def __init__(self, flat: list[str], width: int) -> None:
        self.flat, self.width = flat, width
        self.rows = len(flat) // width
        self._columns: dict[int, list[str]] = {}

    def column(self, src: int) -> list[str]:
        """The column's values, one per line (sliced once; callers do not change the list)."""
        if src not in self._columns:
            self._columns[src] = self.flat[src :: self.width]
        return self._columns[src]

    def row(self, i: int) -> list[str]:
        """Line i's fields, as split_line gives them."""
        return self.flat[i * self.width : (i + 1) * self.width]

    def at_lines(self, src: int, lines: list[int], pick: Callable[[Sequence[str]], tuple[str, ...]]) -> tuple[str, ...]:
        """The column's values on these lines (`pick`: tuple_getter(lines))."""
        return pick(self.column(src))

    def changes(self, sources: list[int]) -> Iterable[bool | int]:
        """For each line after the first: whether it differs from the line before on any of
        these columns (truthy: it does)."""
        keys = list(zip(*map(self.column, sources), strict=True))
        return map(ne, keys[1:], keys)


class BlockTable(Table):
    """A Table whose lines begin with the same `prefix` fields for as long as a *block* of
    lines runs (a bill's lines repeat its bill columns): each line is cut once, its prefix
    kept whole and the rest split; the prefix is split once per block, where it changes. A
    column of the prefix is its block values repeated (shared strings), not a string per
    line. ``block_starts``: the lines whose prefix differs from the line before (0 first).
    ``whole``: every line has `width` fields (else the columns are not the lines' and the
    table must not be used); known from the cut, without counting each line's fields: every
    line gave `width - prefix + 1` pieces, and each block's prefix (the same text on each of
    its lines) has `prefix` fields."""

    def __init__(self, lines: list[str], width: int, prefix: int) -> None:
        rest = width - prefix
        cut = list(chain.from_iterable(map(methodcaller("rsplit", "|", rest), lines)))  # prefix, then `rest`
        n = len(lines)
        prefixes = cut[:: rest + 1]
        self.block_starts = [0, *compress(range(1, n), map(ne, prefixes[1:], prefixes))] if n else []
        heads = list(map(prefixes.__getitem__, self.block_starts))
        self.whole = len(cut) == n * (rest + 1) and set(map(methodcaller("count", "|"), heads)) == {prefix - 1}
        self._sizes = list(map(sub, [*self.block_starts[1:], n], self.block_starts))
        self._heads = list(chain.from_iterable(map(methodcaller("split", "|"), heads)))
        self._cut, self.prefix, self.width, self.rows = cut, prefix, width, n
        self._columns = {}
        self._blocks_of: tuple[list[int], Callable[[Sequence[str]], tuple[str, ...]]] | None = None

    def at_lines(self, src: int, lines: list[int], pick: Callable[[Sequence[str]], tuple[str, ...]]) -> tuple[str, ...]:
        if src >= self.prefix or src in self._columns:
            return pick(self.column(src))
        values = self._block_values(src)  # no value per line made
        if lines == self.block_starts:  # every block a bill (no line disagrees with its bill)
            return tuple(values)
        if self._blocks_of is None or self._blocks_of[0] is not lines:
            blocks = [bisect_right(self.block_starts, line) - 1 for line in lines]
            self._blocks_of = (lines, tuple_getter(blocks))
        return self._blocks_of[1](values)

    def changes(self, sources: list[int]) -> Iterable[bool | int]:
        """A line whose prefix differs from the line before's (every source column is in it;
        one differing elsewhere in the prefix only sends its bill to map_bill, which is safe)."""
        changed = bytearray(self.rows)
        for line in self.block_starts:
            changed[line] = 1
        return changed[1:]

    def _block_values(self, src: int) -> list[str]:
        """A prefix column's value in each block."""
        return self._heads[src :: self.prefix]

    def column(self, src: int) -> list[str]:
        if src not in self._columns:
            if src < self.prefix:
                self._columns[src] = list(chain.from_iterable(map(repeat, self._block_values(src), self._sizes)))
            else:
                self._columns[src] = self._cut[src - self.prefix + 1 :: self.width - self.prefix + 1]
        return self._columns[src]

    def row(self, i: int) -> list[str]:
        block = bisect_right(self.block_starts, i) - 1
        step = self.width - self.prefix + 1
        return self._heads[block * self.prefix : (block + 1) * self.prefix] + self._cut[i * step + 1 : (i + 1) * step]


def make_table(text: str, lines: list[str], width: int, trims: bool, prefix: int | None = None) -> Table | None:
    """The range's lines split by split_line into one Table; None when a line has another number
    of fields than the header (its bill is then rejected by map_bill). `trims`: split_line may
    change a value (it trims around '|' and at either end of a line, and replaces TAB and
    CR; see has_edge_spaces). With nothing to trim and `prefix` (the bill fields come first), a
    BlockTable: the same columns and rows."""
    if not lines:
        return None
    if prefix is not None and not trims:
        blocks = BlockTable(lines, width, prefix)
        return blocks if blocks.whole else None
    if set(map(operator.methodcaller("count", "|"), lines)) != {width - 1}:
        return None
    if trims:
        return Table(list(chain.from_iterable(map(split_line, lines))), width)
    flat = text.replace("\n", "|").split("|")  # nothing to trim: one split for the whole range
    flat.pop()  # after the last line break
    return Table(flat, width)


_EDGES = b"|\n\r"  # where split_line trims a space next to
WIDE_BLANKS = (b"\xa0", b"\x85", b"\xe1\x9a\x80", b"\xe2\x80", b"\xe2\x81\x9f", b"\xe3\x80\x80")
"""Bytes that may be a white-space character beyond ASCII that ``str.strip`` trims: NBSP (cp1252
0xA0, UTF-8 C2 A0), NEL, and the UTF-8 spaces U+1680, U+2000-U+200A/U+2028/U+2029/U+202F,
U+205F, U+3000. A match sends the range to split_line's trimming (more often than needed: correct)."""


def has_edge_spaces(data: bytes) -> bool:
    """Whether a space of these lines (bytes of an ASCII-compatible encoding, CR LF or LF
    line breaks) begins or ends a value: it follows a '|', a line break or nothing, or comes
    before a '|' or a line break (where split_line trims).

    With numpy over the bytes, from the spaces only: about 2 ms for a 4 MB range, where the
    four two-character searches (``"| " in text``, ...) took ~18 ms (CPython's search moves
    at most two characters a step for such a needle; docs/benchmarks.md)."""
    import numpy as np

    if any(blank in data for blank in WIDE_BLANKS):  # a blank beyond ASCII: trimmed like a space
        return True
    codes = np.frombuffer(data, np.uint8)
    spaces = np.flatnonzero(codes == ord(" "))
    if not len(spaces):
        return False
    if spaces[0] == 0:
        return True
    around = np.concatenate((codes[spaces - 1], codes[np.minimum(spaces + 1, len(codes) - 1)]))
    return bool(((around == _EDGES[0]) | (around == _EDGES[1]) | (around == _EDGES[2])).any())  # ~15x np.isin
