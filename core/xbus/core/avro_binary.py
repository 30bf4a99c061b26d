"""Avro's binary encoding of its primitive values, byte for byte as fastavro writes them.

The compiled writers (``xbus.core.record_writer``, ``xbus.core.envelope_writer``) build an
event's bytes from these pieces instead of handing a dict to fastavro, so every piece here
must give exactly fastavro's bytes: zig-zag varints for ints and longs, a length before
strings and bytes, little-endian IEEE floats, the branch index before a union's value.
"""

from __future__ import annotations

import struct

LONG_RANGE = (-(2**63), 2**63 - 1)

_pack_float = struct.Struct("<f").pack
_pack_double = struct.Struct("<d").pack


def _varint(zigzag: int) -> bytes:
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_TABLE = 1 << 14
_VARINTS = [_varint(n) for n in range(_TABLE)]
"""The varint of every zig-zagged value below 2**14 (two bytes at most): lengths and small
ints are looked up instead of computed, a string's length being what is written most."""


def long_bytes(value: int) -> bytes:
    """An int or long: zig-zag, then 7 bits a byte, least significant first. ``value`` must
    be within the long range (the callers check it, as fastavro's C cast would)."""
    zigzag = (value << 1) ^ (value >> 63)
    return _VARINTS[zigzag] if zigzag < _TABLE else _varint(zigzag)


SHORT = _TABLE >> 1
LENGTHS = _VARINTS[::2]
"""The prefix of every length below ``SHORT`` (8192), for writers that inline the look-up."""


def length_bytes(length: int) -> bytes:
    """The length before a string, bytes or an array or map block (never negative)."""
    doubled = length << 1
    return _VARINTS[doubled] if doubled < _TABLE else _varint(doubled)


def string_bytes(value: str) -> bytes:
    """A string: its UTF-8 length, then its UTF-8 bytes (strict, as fastavro's
    ``str.encode()``: a lone surrogate raises ``UnicodeEncodeError``)."""
    data = value.encode()
    return length_bytes(len(data)) + data


def float_bytes(value: float) -> bytes:
    """A float: 4 bytes little-endian. Raises ``OverflowError`` past float's range, where
    fastavro's C cast would write an infinity: the caller leaves such values to fastavro."""
    return _pack_float(value)


def double_bytes(value: float) -> bytes:
    """A double: 8 bytes little-endian."""
    return _pack_double(value)


def union_index(index: int) -> bytes:
    """The branch index that starts a union's value."""
    return long_bytes(index)
