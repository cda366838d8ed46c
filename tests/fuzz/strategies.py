"""Hypothesis strategies for valid-but-hostile protobuf messages, built from descriptors.

Every field of every message gets values chosen to hurt: empty, unicode and huge strings
(around the 128-character id bound and far past it), negative, boundary and huge integers,
unknown enum values, deep repeats of one small element, random oneof choices. A message
that grows a field gets it covered without a change here.
"""

from __future__ import annotations

import operator
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

F = FieldDescriptor
_INT_RANGES = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}
_EDGES = (0, 1, -1, 2, 10, 11, 100, 101, 128, 129, 1000, 1001, 10_000, 10_001, 100_001, 2**31)
MAX_HUGE = 200_000
"""Longest huge string or bytes value (in characters); a few of them pass the test limit."""
MAX_DEPTH = 3
"""How deep messages nest (Batch → Task → TaskError is three levels)."""


def integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Boundary values first, then anything in range."""
    edges = sorted({v for e in _EDGES for v in (e, -e) if lo <= v <= hi} | {lo, hi})
    return st.one_of(st.sampled_from(edges), st.integers(lo, hi))


def texts(*, small: bool = False) -> st.SearchStrategy[str]:
    """Empty, short unicode, around 128 characters, or (unless ``small``) huge."""
    choices = [st.just(""), st.text(max_size=12), st.text(min_size=120, max_size=136)]
    if not small:
        chars = st.sampled_from(["x", "é", "\u2603", "\U0001f600", "\x00"])
        choices.append(st.builds(operator.mul, chars, st.integers(1_000, MAX_HUGE)))
    return st.one_of(choices)


def binaries(*, small: bool = False) -> st.SearchStrategy[bytes]:
    """Short random bytes or (unless ``small``) huge ones."""
    choices = [st.binary(max_size=32)]
    if not small:
        choices.append(st.builds(operator.mul, st.just(b"\xff"), st.integers(1_000, MAX_HUGE)))
    return st.one_of(choices)


def _scalar(field: FieldDescriptor, small: bool) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return integers(*_INT_RANGES[kind])
    if kind == F.TYPE_STRING:
        return texts(small=small)
    if kind == F.TYPE_BYTES:
        return binaries(small=small)
    if kind == F.TYPE_BOOL:
        return st.booleans()
    if kind == F.TYPE_ENUM:
        assert field.enum_type is not None
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))
    if kind == F.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == F.TYPE_DOUBLE:
        return st.floats()
    raise NotImplementedError(f"field type {kind} of {field.full_name}")


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _single(field: FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return messages(field.message_type, depth + 1, small=small)
    return _scalar(field, small)


def _repeated(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if _is_map(field):
        assert field.message_type is not None
        key, value = (
            field.message_type.fields_by_name["key"],
            field.message_type.fields_by_name["value"],
        )
        some = st.dictionaries(_single(key, depth, True), _single(value, depth, False), max_size=4)
        many = st.dictionaries(
            _single(key, depth, True), _single(value, depth, True), min_size=60, max_size=80
        )
        return st.one_of(some, many)
    few = st.lists(_single(field, depth, False), max_size=4)
    deep = st.builds(  # one small element many times: big, cheap, within the limit mostly
        operator.mul,
        st.lists(_single(field, depth, True), min_size=1, max_size=1),
        st.integers(100, 20_000),
    )
    return st.one_of(few, deep)


def _value(field: FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[Any]:
    if field.is_repeated:
        return st.just([]) if small else _repeated(field, depth)
    return _single(field, depth, small)


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    target: Any = getattr(message, field.name) if field.is_repeated else None
    if _is_map(field):
        target.update(value)
    elif field.is_repeated and field.message_type is not None:
        for item in value:
            target.add().CopyFrom(item)
    elif field.is_repeated:
        target.extend(value)
    elif field.message_type is not None:
        getattr(message, field.name).CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _named(name: str) -> Any:
    return lambda value: {name: value}


def messages(
    descriptor: Descriptor, depth: int = 0, *, small: bool = False
) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type with any subset of fields set to hostile values."""
    cls = GetMessageClass(descriptor)
    if depth >= MAX_DEPTH:
        return st.just(cls())
    loose = [f for f in descriptor.fields if f.containing_oneof is None]
    parts: list[st.SearchStrategy[dict[str, Any]]] = [
        st.fixed_dictionaries({}, optional={f.name: _value(f, depth, small) for f in loose})
    ]
    for oneof in descriptor.oneofs:  # at most one member (proto3 optional: set or not)
        members: list[st.SearchStrategy[dict[str, Any]]] = [st.just({})]
        members += [_value(f, depth, small).map(_named(f.name)) for f in oneof.fields]
        parts.append(st.one_of(members))

    def build(chosen: tuple[dict[str, Any], ...]) -> Message:
        message = cls()
        for values in chosen:
            for name, value in values.items():
                _assign(message, descriptor.fields_by_name[name], value)
        return message

    return st.tuples(*parts).map(build)
