"""Fields that parse JSON numbers and arrays strictly, in one NumPy call.

marshmallow's own Float accepts strings ("3.5", " 2 ", "1_000") and
np.asarray turns true into 1.0 and null into nan.  Neither is acceptable
at this boundary: a number must be a JSON number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec
import numpy as np
from marshmallow import ValidationError, fields, utils, validate

from service.core.shapes import shape_text  # also imported from here by the schemas

from . import binary
from .bounded import LIST_ERROR_LIMIT, did_you_mean, quoted


def json_type(value: Any) -> str:
    """The JSON name of a decoded value, for error messages (a string is quoted, bounded)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {quoted(value)}"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Number(fields.Float):
    """A finite JSON number; strings, booleans and null are refused."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValidationError(f"expected a JSON number, got {json_type(value)}.")
        try:
            number = float(value)
        except OverflowError:  # an integer literal beyond any double
            number = math.inf
        if not math.isfinite(number):
            raise ValidationError("expected a finite number.")
        return number

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else float(value)


class Whole(fields.Integer):
    """A JSON integer; booleans, strings and numbers written with a fraction are refused.

    ``7.0`` is refused too: the published document says ``type: integer``, which
    ``7.0`` is not to a JSON Schema validator or a generated client, so accepting
    it here would make the service and its contract disagree.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            raise ValidationError(
                f"expected a whole number, got {value!r}; write it without a decimal point "
                f"({int(value)})."
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"expected a whole number, got {json_type(value)}.")
        return super()._deserialize(value, attr, data, **kwargs)


class Flag(fields.Boolean):
    """A JSON true or false; marshmallow's Boolean would also take "yes", 1 and "on"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise ValidationError(f"expected true or false, got {json_type(value)}.")
        return value


def positive_number(**kwargs) -> Number:
    """A Number that must be > 0, documented as such (OpenAPI 3.0's exclusiveMinimum)."""
    return Number(
        validate=validate.Range(
            min=0, min_inclusive=False, error="must be greater than 0 (got {input})."
        ),
        metadata={"exclusiveMinimum": True, **kwargs.pop("metadata", {})},
        **kwargs,
    )


def _first_defect(value: Any, ndim: int, path: str = "") -> str | None:
    """Walk a nested list to say what is wrong with it and where (error path only)."""
    if ndim == 0:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"element {path} is {json_type(value)}; every element must be a JSON number."
        return None
    if not isinstance(value, list):
        return f"element {path} is {json_type(value)} where a list was expected."
    for i, item in enumerate(value):
        defect = _first_defect(item, ndim - 1, f"{path}[{i}]")
        if defect:
            return defect
    return None


def _ragged_defect(value: list) -> str:
    """Say where a nested list stops being rectangular (error path only)."""
    is_list = [isinstance(item, list) for item in value]
    for i, item in enumerate(value):
        if is_list[i] != is_list[0]:
            return (
                f"element [{i}] is {json_type(item)} but element [0] is "
                f"{json_type(value[0])}; an array cannot mix numbers and lists."
            )
    if all(is_list):
        for i, row in enumerate(value):
            if len(row) != len(value[0]):
                return (
                    f"the rows have different lengths (ragged): row 0 has {len(value[0])} "
                    f"elements, row {i} has {len(row)}; every row must have the same length."
                )
    return "the nested lists are ragged: every row must have the same length and depth."


class Array(fields.Field):
    """A JSON array of numbers parsed into a float64 ndarray.

    ``ndims`` lists the accepted numbers of dimensions (0 is a bare number).
    The conversion is one np.array call, and one msgspec pass in C catches
    what NumPy would silently convert: booleans (to 0 and 1) and numeric
    strings ("1.5").  Shape rules that depend on other fields
    (bias shapes, layer chaining) live in the schemas, not here.
    """

    def __init__(
        self,
        ndims: tuple[int, ...] = (2,),
        documented_ndims: tuple[int, ...] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ndims = ndims
        #: what the OpenAPI document advertises: a form parsed here only so that the
        #: schema can refuse it with a better message (a 1-D ``inputs``) is left out.
        self.documented_ndims = ndims if documented_ndims is None else documented_ndims

    def _expected(self) -> str:
        names = {
            0: "a number",
            1: "a list of numbers",
            2: "a list of lists of numbers",
            4: "a 4-D nested list of numbers (batch, channels, height, width)",
        }
        return " or ".join(names[n] for n in self.ndims)

    def _deserialize(self, value, attr, data, **kwargs) -> np.ndarray:
        if binary.is_binary(value):
            array = binary.decode(value)
            self._check_ndim(array)
            self._check_not_empty(array)
            if not np.isfinite(array).all():  # raw bytes can hold NaN and infinity
                raise ValidationError("every element must be a finite number.")
            return array
        if not isinstance(value, list) and not (0 in self.ndims and _is_number(value)):
            raise ValidationError(f"expected {self._expected()}, got {json_type(value)}.")
        try:
            # Straight to float64: no dtype inference pass. What the conversion would hide
            # (strings read as numbers, null as nan, booleans as 0 and 1) is caught below.
            array = np.array(value, dtype=np.float64)
        except OverflowError:  # an integer literal beyond any double
            raise ValidationError("every element must be a finite number.") from None
        except (ValueError, TypeError):
            raise ValidationError(_structure_defect(value)) from None
        self._check_ndim(array)
        if not _only_numbers(value, array.ndim):
            raise ValidationError(
                _first_defect(value, array.ndim) or "every element must be a JSON number."
            )
        self._check_not_empty(array)
        # No finiteness check: every JSON number is finite, both parsers refuse NaN,
        # Infinity and 1e400, and a too large integer failed the conversion above.
        return array

    def _check_ndim(self, array: np.ndarray) -> None:
        if array.ndim not in self.ndims:
            raise ValidationError(
                f"expected {self._expected()}, got a {array.ndim}-D array of shape "
                f"{shape_text(array.shape)}."
            )

    @staticmethod
    def _check_not_empty(array: np.ndarray) -> None:
        if array.size == 0:
            raise ValidationError(f"the array is empty (shape {shape_text(array.shape)}).")

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None or binary.is_binary(value):
            return value  # already in the binary form the client asked for
        value = np.asarray(value, dtype=np.float64)
        # service.http.json serialises ndarrays natively; a bare number stays a number.
        return float(value) if value.ndim == 0 else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: The nested list types msgspec checks an array of each number of dimensions against.
_NUMBER_LISTS: dict[int, Any] = {
    0: float,
    1: list[float],
    2: list[list[float]],
    3: list[list[list[float]]],
    4: list[list[list[list[float]]]],
}


def _only_numbers(value: Any, ndim: int) -> bool:
    """Every element is a JSON number (no boolean, no string), checked in C by msgspec.

    msgspec's strict float refuses booleans and strings; it walks 150k numbers in
    0.3 ms where a set of their types took 2.2 ms, as much as the conversion itself.
    """
    try:
        msgspec.convert(value, _NUMBER_LISTS[ndim])
    except msgspec.ValidationError:
        return False
    return True


def _structure_defect(value: list) -> str:
    """Why a nested list is not an array of numbers: a non-number, or rows that differ."""
    depth, first = 0, value
    while isinstance(first, list) and first:
        depth, first = depth + 1, first[0]
    return _first_defect(value, depth) or _ragged_defect(value)


class List(fields.List):
    """marshmallow's List, whose checking stops after LIST_ERROR_LIMIT failing items.

    A 400 KB body of 100,000 empty layers took 10 s and answered 18 MB; the
    error document shows 50 entries anyway.  The list's own path says how many
    items were left unchecked.
    """

    def _deserialize(self, value, attr, data, **kwargs) -> list:
        if not utils.is_collection(value):
            raise self.make_error("invalid")
        result, errors = [], {}
        for index, item in enumerate(value):
            try:
                result.append(self.inner.deserialize(item, **kwargs))
            except ValidationError as error:
                if error.valid_data is not None:
                    result.append(error.valid_data)
                errors[index] = error.messages
                left = len(value) - index - 1
                if len(errors) == LIST_ERROR_LIMIT and left:
                    stopped = [
                        f"checking stopped after {LIST_ERROR_LIMIT} failing items; the other "
                        f"{left:,} item(s) were not checked. Fix these and send it again."
                    ]
                    errors = {"_schema": stopped, **errors}  # first: the document shows it
                    break
        if errors:
            raise ValidationError(errors, valid_data=result)
        return result


def one_of(choices: Iterable[str], what: str, **kwargs: Any) -> fields.String:
    """A name from a fixed set, validated with a did-you-mean and documented as an enum."""
    choices = tuple(choices)
    metadata = {"enum": list(choices), **kwargs.pop("metadata", {})}
    return fields.String(validate=Choice(choices, what), metadata=metadata, **kwargs)


class Choice(validate.Validator):
    """One of a fixed set of names, with a did-you-mean suggestion."""

    def __init__(self, choices: Iterable[str], what: str):
        self.choices = tuple(choices)
        self.what = what

    def __call__(self, value: str) -> str:
        if value not in self.choices:
            raise ValidationError(
                f"unknown {self.what} {quoted(value)}; expected one of "
                f"{', '.join(self.choices)}.{did_you_mean(value, self.choices)}"
            )
        return value


#: A hard cap on any list of layers, checked before any layer is read, so a list of
#: thousands costs nothing; the configured GRADIENT_MAX_LAYERS (64 by default) and the
#: request's cost are checked next, before anything is computed.
MAX_LAYERS = 1024


class BoundedList(List):
    """A List whose length is checked before any of its items is.

    marshmallow validates a list's length after every item, so a list of
    thousands would be walked first; here it is refused at once.
    """

    def __init__(self, inner: fields.Field, max_items: int, what: str = "items", **kwargs: Any):
        metadata = {"maxItems": max_items, **kwargs.pop("metadata", {})}
        super().__init__(inner, metadata=metadata, **kwargs)
        self.max_items = max_items
        self.what = what

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, list) and len(value) > self.max_items:
            raise ValidationError(
                f"got {len(value):,} {self.what}; at most {self.max_items:,} are accepted."
            )
        return super()._deserialize(value, attr, data, **kwargs)
