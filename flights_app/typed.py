"""Typed messages: JSON checked against a ``faust.Record``'s declared fields, and the record built.

A message of an internal topic is declared once, as a record; ``parse`` checks what arrived
against that declaration and builds the record (its nested records too), or says what is wrong.
It never raises. Types a field may have:

    bool, int, float, str      the JSON value of that type (an int is a float; bool is neither; not NaN)
    NonNegative                an int that is not negative (a count; flights_app.counts)
    X | None                   X, or null (Faust gives such a field the default None: it may be absent)
    list[X]                    a list of X
    dict                       any object
    a faust.Record             an object with its fields (missing ones take their defaults; others
                               are ignored, so a newer sender's extra field does not stop an older reader)
    a dataclass                an object with exactly its fields, each of its declared type, kept as
                               the object that arrived (a dict: what the tables store)

A record may define ``problem(self) -> str | None`` for what its types cannot say (a name that
must be one of a list); ``parse`` calls it on the built record.
Records are built without Faust's per-field descriptor calls (``faust_internals.built``): at
thousands of partials a second, Faust's constructor would cost more than the checks.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, TypeVar

import faust

from flights_app.faust_internals import built, record_defaults, record_fields

R = TypeVar("R", bound=faust.Record)


class Invalid(ValueError):
    """What is wrong with a value, naming where it is (``groups[1].partials[0].partial.count``)."""

    def __init__(self, value: Any, expected: str):
        super().__init__()
        self.path: list[str] = []  # filled in on the way out, so that a good message costs no path
        self.value, self.expected = value, expected

    def at(self, segment: str) -> Invalid:
        self.path.append(segment)
        return self

    def __str__(self) -> str:
        where = "".join(reversed(self.path)).lstrip(".") or "the message"
        if self.value is _MISSING:
            return f"{where} is missing"
        return f"{where}={_short(self.value)} is not {self.expected}"


_MISSING = object()


def parse(record_type: type[R], data: Any) -> R | str:
    """``data`` (decoded JSON) as a ``record_type``, or what is wrong with it."""
    try:
        return _checker(record_type)(data)
    except Invalid as error:
        return str(error)


Check = Callable[[Any], Any]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@cache
def _checker(tp: Any) -> Check:  # noqa: C901 - one branch per kind of type, each short
    if typing.get_origin(tp) is Annotated:
        base, *marks = typing.get_args(tp)
        inner = _checker(base)
        if "not negative" in marks and base is int:
            def count(value):
                if type(value) is not int or value < 0:  # (bool is a subclass of int, not int)
                    raise Invalid(value, "a count (a whole number, not negative)")
                return value
            return count
        return inner
    if tp is bool:
        def boolean(value):
            if value is not True and value is not False:
                raise Invalid(value, "true or false")
            return value
        return boolean
    if tp is int:
        def integer(value):
            if type(value) is not int:  # JSON's integers are exactly int; bool is not
                raise Invalid(value, "a whole number")
            return value
        return integer
    if tp is float:
        def number(value):
            kind = type(value)
            if not (kind is float or kind is int) or value != value:
                raise Invalid(value, "a number")
            return value
        return number
    if tp is str:
        def string(value):
            if not isinstance(value, str):
                raise Invalid(value, "a string")
            return value
        return string
    if tp is dict or typing.get_origin(tp) is dict:
        def mapping(value):
            if not isinstance(value, dict):
                raise Invalid(value, "an object")
            return value
        return mapping
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1 or len(typing.get_args(tp)) != 2:
            raise TypeError(f"only X | None unions are checked, not {tp}")
        inner = _checker(options[0])

        def optional(value):
            return None if value is None else inner(value)
        return optional
    if origin is list:
        (item_type,) = typing.get_args(tp)
        item = _checker(item_type)

        def items(value):
            if not isinstance(value, list):
                raise Invalid(value, "a list")
            try:
                return [item(v) for v in value]
            except Invalid as error:
                index = next(i for i, v in enumerate(value) if _fails(item, v))
                raise error.at(f"[{index}]") from None
        return items
    if isinstance(tp, type) and issubclass(tp, faust.Record):
        return _record_checker(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass_checker(tp)
    raise TypeError(f"no check for fields of type {tp!r}")


def _fails(check: Check, value: Any) -> bool:
    try:
        check(value)
    except Invalid:
        return True
    return False


def _record_checker(record_type: type[faust.Record]) -> Check:
    hints = typing.get_type_hints(record_type, include_extras=True)
    defaults = record_defaults(record_type)
    fields = [(name, _checker(hints[name])) for name in record_fields(record_type)]
    problem = getattr(record_type, "problem", None)

    def record(value):
        if not isinstance(value, dict):
            raise Invalid(value, f"an object ({record_type.__name__})")
        out = {}
        for name, check in fields:
            try:
                out[name] = check(value[name]) if name in value else defaults[name]
            except KeyError:
                raise Invalid(_MISSING, "").at(f".{name}") from None
            except Invalid as error:
                raise error.at(f".{name}") from None
        built_record = built(record_type, out)
        if problem is not None and (wrong := built_record.problem()) is not None:
            raise Invalid(value, f"valid: {wrong}")
        return built_record
    return record


def _dataclass_checker(cls: type) -> Check:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [(f.name, _checker(hints[f.name])) for f in dataclasses.fields(cls)]
    names = {name for name, _ in fields}
    expected = f"an object with exactly the fields of {cls.__name__} ({', '.join(n for n, _ in fields)})"

    def exact(value):
        if not isinstance(value, dict) or value.keys() != names:
            raise Invalid(value, expected)
        for name, check in fields:
            try:
                check(value[name])
            except Invalid as error:
                raise error.at(f".{name}") from None
        return value
    return exact
