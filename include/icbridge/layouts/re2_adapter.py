"""Patterns of the project (Python's `re` syntax) compiled by RE2 for the same language.

A fullmatch over megabytes (a BIF's rows, a column of a mapped range) runs at ~130 MB/s in
Python's backtracking engine and ~550 MB/s in RE2's automaton (docs/benchmarks.md, "Initial
data dump"). Used by the BIF proof (bif_proof) and the column path of the mapping.
"""

from __future__ import annotations

import re

import re2

# The one lookahead of the date patterns (a year that is not 0000), as RE2 has no lookaround
_YEAR_NOT_0000 = [
    (r"/(?!0000)\d{4}", r"/(?:[1-9]\d{3}|0[1-9]\d\d|00[1-9]\d|000[1-9])"),
    (r"/(?!0000)[0-9]{4}", r"/(?:[1-9][0-9]{3}|0[1-9][0-9][0-9]|00[1-9][0-9]|000[1-9])"),
]
# classes Python and RE2 read otherwise: in a str pattern Python's are Unicode, RE2's ASCII;
# for bytes both are ASCII, but RE2's \s leaves out the vertical tab
_OTHER_CLASSES = {False: re.compile(r"\\[sSdDwWbB]"), True: re.compile(r"\\[sS]")}


def as_re2(pattern: str, for_bytes: bool = True) -> re2._Regexp | Utf8Matcher:
    """A pattern of the project (Python's syntax) compiled by RE2, for the same language:
    for bytes, a byte a character (Latin-1, as Python's bytes patterns read them); else for
    str. Raises ValueError when RE2 would read it otherwise (lookaround, atomic groups, and
    the classes it reads otherwise: \\s, and for str \\d \\w \\b, which Python makes Unicode).

    Why: a fullmatch over megabytes (a mapped chunk's rows, a column of a range) runs at
    ~130 MB/s in Python's backtracking engine and ~550 MB/s in RE2's automaton (the row
    proof was a fifth of the mapping's CPU; docs/benchmarks.md, "Initial data dump"). The
    possessive quantifiers only spare Python's engine backtracking that cannot succeed (each
    repeated piece ends where the next cannot start); RE2 never backtracks, so they are
    dropped; the one lookahead is spelled out (tests/unit/layouts/test_bif_fast_check.py compares the two
    engines on valid and damaged rows)."""
    syntax = pattern
    for lookahead, spelled in _YEAR_NOT_0000:
        syntax = syntax.replace(lookahead, spelled)
    syntax = syntax.replace("*+", "*").replace("++", "+")
    if any(mark in syntax for mark in ("(?=", "(?!", "(?<", "(?>", "?+", "}+")):
        raise ValueError(f"not in RE2's syntax: {pattern!r}")
    if _OTHER_CLASSES[for_bytes].search(syntax):
        raise ValueError(f"RE2 reads a class of it otherwise: {pattern!r}")
    options = re2.Options()
    options.never_capture = True
    options.max_mem = 64 << 20  # the automaton of the invoice pattern, built as it runs
    if not for_bytes:
        return Utf8Matcher(re2.compile(syntax.encode("utf-8"), options))
    options.encoding = re2.Options.Encoding.LATIN1
    return re2.compile(syntax.encode("latin-1"), options)


class Utf8Matcher:
    """An RE2 pattern for str, matched over the str's UTF-8 bytes. google-re2 takes a str
    itself, but then counts the characters of the whole match to give str offsets (as long
    again as the match); a fullmatch needs no offsets."""

    def __init__(self, regexp: re2._Regexp) -> None:
        self.regexp = regexp

    def fullmatch(self, text: str) -> re2._Match | None:
        # a lone surrogate (never in decoded AUS text) becomes bytes no class of ours matches
        return self.regexp.fullmatch(text.encode("utf-8", "surrogatepass"))
