"""What a body's raw bytes prove before it is parsed: how many numbers it holds, and (for a
large body) how many lists, objects and strings, which is what parsing it will allocate.

Parsing 24 MB of JSON numbers into Python floats takes seconds (orjson 1.7 s
here, 5.6 s in a loaded worker); counting them in the text takes milliseconds.
A number token is a digit or ``-`` that does not continue a previous token
(digits, ``-+.eE``), outside every string.  Strings are found with the
backslash escapes honoured (a quote after an odd run of backslashes is
escaped), so digits inside a string, base64 included, never count.

For a JSON text the count is exact; for a text that is not JSON it means
nothing, but such a body is refused whatever it holds.  The scan goes through
the body in 1 MiB chunks, so its memory stays a few MiB: a chunk with no quote
and no backslash (bytes.find, at memory speed) lies entirely inside or outside
one string, and only a chunk with either needs the string mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 1 << 20
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
#: strings in a chunk whose mask is set span by span; past them, by one xor.accumulate
_FEW_QUOTES = 256


def numbers_in_text(body: bytes) -> int:
    """The number tokens outside strings in ``body`` (exact for a JSON text)."""
    return numbers_over(body, -1)


def numbers_over(body: bytes, limit: int) -> int:
    """The number tokens in ``body`` if they are more than ``limit``, else 0.

    n numbers need at least 2n - 1 bytes ("1,1,1"), so a body too short to hold
    more than ``limit`` is not scanned, and the scan stops where the bytes left
    could not hold enough more.
    """
    total, in_string, after_number, backslashes = 0, False, False, 0
    for start in range(0, len(body), CHUNK):
        if total + (len(body) - start + 1) // 2 <= limit:
            return 0
        end = min(start + CHUNK, len(body))
        chunk = np.frombuffer(body, dtype=np.uint8, count=end - start, offset=start)
        if body.find(b'"', start, end) != -1:
            outside, in_string, backslashes = _outside_strings(chunk, in_string, backslashes)
        elif in_string:  # one string throughout (base64 data, say): nothing to count
            backslashes = _trailing_backslashes(body, start, end, backslashes)
            after_number = False
            continue
        else:  # outside every string throughout
            outside, backslashes = None, 0
        count, after_number = _number_starts(chunk, after_number, outside)
        total += count
    return total if total > limit else 0


@dataclass(frozen=True)
class Census:
    """The JSON values outside strings that parsing ``body`` makes Python objects of."""

    numbers: int
    lists: int
    objects: int
    strings: int


def census(body: bytes) -> Census:
    """Every number, list, object and string in ``body`` (exact for a JSON text): one pass
    over the whole text, in the same 1 MiB chunks as ``numbers_over``."""
    numbers = lists = objects = quotes = 0
    in_string, after_number, backslashes = False, False, 0
    for start in range(0, len(body), CHUNK):
        end = min(start + CHUNK, len(body))
        chunk = np.frombuffer(body, dtype=np.uint8, count=end - start, offset=start)
        if body.find(b'"', start, end) != -1:
            outside, in_string, backslashes = _outside_strings(chunk, in_string, backslashes)
            # a string's closing quote is the one quote of it outside (its opening quote and
            # any escaped one are inside): one a string
            quotes += int(np.count_nonzero((chunk == _QUOTE) & outside))
        elif in_string:
            backslashes = _trailing_backslashes(body, start, end, backslashes)
            after_number = False
            continue
        else:
            outside, backslashes = None, 0
        count, after_number = _number_starts(chunk, after_number, outside)
        numbers += count
        brackets, braces = chunk == ord("["), chunk == ord("{")
        if outside is not None:
            brackets &= outside
            braces &= outside
        lists += int(np.count_nonzero(brackets))
        objects += int(np.count_nonzero(braces))
    return Census(numbers, lists, objects, quotes)


def _trailing_backslashes(body: bytes, start: int, end: int, carried: int) -> int:
    """The backslashes ending ``body[start:end]`` (they may escape the next chunk's first byte)."""
    if body[end - 1] != _BACKSLASH:
        return 0
    run = (end - start) - len(body[start:end].rstrip(b"\\"))
    return run + carried if run == end - start else run


def _number_starts(chunk: np.ndarray, after_number: bool, outside: np.ndarray | None):
    """How many number tokens begin in ``chunk`` (where ``outside``), and if it ends in one."""
    digit = (chunk - np.uint8(48)) < 10  # uint8 arithmetic wraps: bytes below '0' are large
    first = digit | (chunk == ord("-"))
    within = first | (chunk == ord("+")) | (chunk == ord(".")) | ((chunk | 32) == ord("e"))
    begins = first
    begins[1:] &= ~within[:-1]
    begins[0] &= not after_number
    if outside is not None:
        begins &= outside
    return int(np.count_nonzero(begins)), bool(within[-1])


def _outside_strings(chunk: np.ndarray, in_string: bool, backslashes: int):
    """The mask of bytes outside strings, and the state the next chunk starts in.

    ``backslashes`` is the run of them that ended the previous chunk; the quotes
    that delimit strings are the unescaped ones, and every byte from an opening
    quote to the one before its closing quote is inside.
    """
    quotes = chunk == _QUOTE
    escaped, backslashes = _escaped(np.flatnonzero(chunk == _BACKSLASH), len(chunk), backslashes)
    quotes[escaped] = False
    delimiters = np.flatnonzero(quotes)
    ends_inside = in_string ^ bool(delimiters.size % 2)
    if delimiters.size > _FEW_QUOTES:  # xor.accumulate: a loop in C, no faster per byte
        inside = np.bitwise_xor.accumulate(quotes.view(np.uint8))
        if in_string:
            inside ^= 1
        return inside == 0, ends_inside, backslashes
    outside = np.ones(len(chunk), dtype=bool)
    bounds = (
        ([0] if in_string else []) + delimiters.tolist() + ([len(chunk)] if ends_inside else [])
    )
    for opening, closing in zip(bounds[::2], bounds[1::2]):
        outside[opening:closing] = False
    return outside, ends_inside, backslashes


def _escaped(positions: np.ndarray, size: int, carried: int) -> tuple[np.ndarray, int]:
    """Indices escaped by a backslash (after an odd run), and the run that ends the chunk."""
    if positions.size == 0:
        return np.array([0] if carried % 2 else [], dtype=np.intp), 0
    starts_run = np.ones(positions.size, dtype=bool)
    starts_run[1:] = positions[1:] != positions[:-1] + 1
    ends_run = np.ones(positions.size, dtype=bool)
    ends_run[:-1] = starts_run[1:]
    firsts, lasts = positions[starts_run], positions[ends_run]
    lengths = lasts - firsts + 1
    escaped = lasts[lengths % 2 == 1] + 1
    if carried:
        if firsts[0] == 0:  # the previous chunk's run goes on
            lengths[0] += carried
            escaped = lasts[lengths % 2 == 1] + 1
        elif carried % 2:
            escaped = np.concatenate(([0], escaped))
    carry = int(lengths[-1]) if lasts[-1] == size - 1 else 0
    return escaped[escaped < size], carry
