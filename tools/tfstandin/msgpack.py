"""A small MessagePack codec: the wire encoding of Terraform's DynamicValue.

Only what the plugin protocol uses: nil, bool, int, float, str, bin, array, map and ext. Terraform
marks an unknown value with an ext of type 0 (type 12 when it carries refinements); both decode to
`Ext` and the caller decides what they mean.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ext:
    """A MessagePack extension value (type code and raw bytes)."""

    code: int
    data: bytes


class MsgpackError(ValueError):
    """The bytes are not MessagePack this codec understands."""


def packb(value: Any) -> bytes:
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_int(value, out)
    elif isinstance(value, float):
        out.append(0xCB)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        n = len(raw)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += bytes((0xD9, n))
        elif n < 0x10000:
            out.append(0xDA)
            out += struct.pack(">H", n)
        else:
            out.append(0xDB)
            out += struct.pack(">I", n)
        out += raw
    elif isinstance(value, bytes | bytearray):
        n = len(value)
        if n < 0x100:
            out += bytes((0xC4, n))
        elif n < 0x10000:
            out.append(0xC5)
            out += struct.pack(">H", n)
        else:
            out.append(0xC6)
            out += struct.pack(">I", n)
        out += value
    elif isinstance(value, Ext):
        _pack_ext(value, out)
    elif isinstance(value, list | tuple):
        _pack_len(len(value), 0x90, 0xDC, out)
        for item in value:
            _pack(item, out)
    elif isinstance(value, dict):
        _pack_len(len(value), 0x80, 0xDE, out)
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise MsgpackError(f"cannot encode {type(value).__name__}")


def _pack_len(n: int, fix: int, wide: int, out: bytearray) -> None:
    if n < 16:
        out.append(fix | n)
    elif n < 0x10000:
        out.append(wide)
        out += struct.pack(">H", n)
    else:
        out.append(wide + 1)
        out += struct.pack(">I", n)


def _pack_int(value: int, out: bytearray) -> None:
    if 0 <= value < 0x80:
        out.append(value)
    elif -32 <= value < 0:
        out += struct.pack(">b", value)
    elif 0 <= value <= 0xFFFFFFFFFFFFFFFF:
        out.append(0xCF)
        out += struct.pack(">Q", value)
    elif -(2**63) <= value < 0:
        out.append(0xD3)
        out += struct.pack(">q", value)
    else:
        raise MsgpackError(f"integer out of range: {value}")


def _pack_ext(value: Ext, out: bytearray) -> None:
    n = len(value.data)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
    if n in fixed:
        out.append(fixed[n])
    elif n < 0x100:
        out += bytes((0xC7, n))
    elif n < 0x10000:
        out.append(0xC8)
        out += struct.pack(">H", n)
    else:
        out.append(0xC9)
        out += struct.pack(">I", n)
    out += struct.pack(">b", value.code)
    out += value.data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise MsgpackError("truncated MessagePack data")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        return struct.unpack(fmt, self.take(size))[0]


def unpackb(data: bytes) -> Any:
    reader = _Reader(data)
    value = _unpack(reader)
    if reader.pos != len(data):
        raise MsgpackError("trailing bytes after MessagePack value")
    return value


_FIXED_EXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_SIZED = {  # code -> (kind, struct format of the length)
    0xC4: ("bin", ">B"),
    0xC5: ("bin", ">H"),
    0xC6: ("bin", ">I"),
    0xC7: ("ext", ">B"),
    0xC8: ("ext", ">H"),
    0xC9: ("ext", ">I"),
    0xD9: ("str", ">B"),
    0xDA: ("str", ">H"),
    0xDB: ("str", ">I"),
    0xDC: ("array", ">H"),
    0xDD: ("array", ">I"),
    0xDE: ("map", ">H"),
    0xDF: ("map", ">I"),
}
_NUMBERS = {
    0xCA: ">f",
    0xCB: ">d",
    0xCC: ">B",
    0xCD: ">H",
    0xCE: ">I",
    0xCF: ">Q",
    0xD0: ">b",
    0xD1: ">h",
    0xD2: ">i",
    0xD3: ">q",
}


def _unpack(r: _Reader) -> Any:
    code = r.take(1)[0]
    if code <= 0x7F:
        return code
    if code >= 0xE0:
        return code - 0x100
    if 0x80 <= code <= 0x8F:
        return _unpack_map(r, code & 0x0F)
    if 0x90 <= code <= 0x9F:
        return [_unpack(r) for _ in range(code & 0x0F)]
    if 0xA0 <= code <= 0xBF:
        return r.take(code & 0x1F).decode()
    if code == 0xC0:
        return None
    if code in (0xC2, 0xC3):
        return code == 0xC3
    if code in _NUMBERS:
        return r.unpack(_NUMBERS[code])
    if code in _FIXED_EXT:
        ext_code = r.unpack(">b")
        return Ext(ext_code, r.take(_FIXED_EXT[code]))
    if code in _SIZED:
        kind, fmt = _SIZED[code]
        n = r.unpack(fmt)
        if kind == "bin":
            return r.take(n)
        if kind == "str":
            return r.take(n).decode()
        if kind == "ext":
            ext_code = r.unpack(">b")
            return Ext(ext_code, r.take(n))
        if kind == "array":
            return [_unpack(r) for _ in range(n)]
        return _unpack_map(r, n)
    raise MsgpackError(f"unsupported MessagePack code 0x{code:02x}")


def _unpack_map(r: _Reader, n: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for _ in range(n):
        key = _unpack(r)
        out[key] = _unpack(r)
    return out
