"""Error messages that stay small whatever the client sends: the caps, in one place.

A message may quote the client's text (an unknown name, a string where a number
belongs) but never more than QUOTE_LIMIT characters of it, with a visible
marker and the full length; the work spent on a bad request stops growing
after the first few dozen errors.  (service.http.errors caps the problem document
itself: how many entries, how long a path.)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from itertools import islice
from typing import Any

#: The most characters of the client's own text one message quotes: a 20 MB string
#: sent where a name belongs is shown by its first 200 characters and its length.
QUOTE_LIMIT = 200
#: Unknown keys of one object that each get a did-you-mean; the rest share one message.
SUGGESTED_UNKNOWN = 50
#: Failing items of one list that are checked and reported; checking stops after them.
LIST_ERROR_LIMIT = 50
#: Items of a list, keys of an object, that ``excerpt`` shows before "... (N items)".
EXCERPT_ITEMS = 8

#: difflib's default cutoff for a close match
_CLOSE_ENOUGH = 0.6


def quoted(text: str) -> str:
    """``repr(text)``, cut after QUOTE_LIMIT characters with a visible marker and the length."""
    if len(text) <= QUOTE_LIMIT:
        return repr(text)
    return f"{text[:QUOTE_LIMIT]!r}... ({len(text):,} characters)"


def clipped(text: str) -> str:
    """``text`` itself, cut after QUOTE_LIMIT characters with a visible marker and the length."""
    if len(text) <= QUOTE_LIMIT:
        return text
    return f"{text[:QUOTE_LIMIT]}... ({len(text):,} characters)"


def listing(names: Iterable[str], count: int) -> str:
    """``a, b, c``: the first of ``count`` names, QUOTE_LIMIT characters in all, and how many."""
    return _joined([clipped(name) for name in islice(names, EXCERPT_ITEMS)], count, "in all")


def excerpt(value: Any, depth: int = 0) -> str:
    """A decoded JSON value as Python shows it, bounded: long strings, numbers and lists cut.

    Numbers count as client text too: an integer literal of 4,000 digits is kept
    exact by msgspec.
    """
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, list):
        if depth:
            return f"[... ({len(value):,} items)]" if value else "[]"
        items = [excerpt(item, depth + 1) for item in value[:EXCERPT_ITEMS]]
        return f"[{_joined(items, len(value), 'items')}]"
    if isinstance(value, dict):
        return f"{{... ({len(value):,} keys)}}" if value else "{}"
    try:
        return clipped(repr(value))  # None, booleans, numbers
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        return "an integer of more than 4,300 digits"


def _joined(parts: list[str], count: int, unit: str) -> str:
    """``parts`` joined, cut at QUOTE_LIMIT characters, with ``count`` when any is left out."""
    text = ", ".join(parts)
    if len(text) > QUOTE_LIMIT:
        return f"{text[:QUOTE_LIMIT]}... ({count:,} {unit})"
    return f"{text}, ... ({count:,} {unit})" if count > len(parts) else text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest choice, or "".

    difflib's ratio is 2 * matches / (len(a) + len(b)), so a word more than 7/3
    times as long as every choice cannot reach the 0.6 cutoff: such a word is
    not compared at all (difflib indexes every character of it: 1 GB of worker
    memory for a 20 MB string), and the answer is the same.
    """
    choices = list(choices)
    if len(word) * 3 > max(map(len, choices), default=0) * 7:
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=_CLOSE_ENOUGH)
    return f" Did you mean {close[0]!r}?" if close else ""
