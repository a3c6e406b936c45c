"""Terraform's value types (cty) and their MessagePack encoding, as the plugin protocol uses them.

Types are parsed from their JSON form (`"string"`, `["list", "string"]`, `["object", {...}]`).
Values are plain Python: None is null, `UNKNOWN` an unknown value, lists for lists, sets and tuples,
dicts for maps and objects, and `Dyn` a value of an attribute typed `dynamic`, which the wire
format carries together with its concrete type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tfstandin.msgpack import Ext

TypeJSON = Any  # "string" | [kind, element] | ["object", {name: type}] | ...


class _Unknown:
    """A value Terraform does not know yet (known only after apply)."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()
_UNKNOWN_EXT_CODES = (0, 12)  # plain unknown, unknown with refinements


@dataclass(frozen=True)
class Dyn:
    """A value of a `dynamic` attribute: its concrete type (JSON) and the value."""

    type: TypeJSON
    value: Any


class CtyError(ValueError):
    """A value does not fit its type."""


def type_bytes(ty: TypeJSON) -> bytes:
    return json.dumps(ty, separators=(",", ":")).encode()


def decode(ty: TypeJSON, raw: Any) -> Any:
    """Python value of a decoded MessagePack item of type `ty`."""
    if isinstance(raw, Ext):
        if raw.code in _UNKNOWN_EXT_CODES:
            return UNKNOWN
        raise CtyError(f"unexpected MessagePack extension {raw.code}")
    if raw is None:
        return None
    if ty == "dynamic":
        if not (isinstance(raw, list) and len(raw) == 2):
            raise CtyError("a dynamic value must be [type, value]")
        inner = json.loads(raw[0])
        return Dyn(inner, decode(inner, raw[1]))
    if ty == "string":
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    if ty == "number":
        if isinstance(raw, str | bytes):
            text = raw.decode() if isinstance(raw, bytes) else raw
            number = float(text)
            return int(number) if number.is_integer() and "." not in text else number
        return raw
    if ty == "bool":
        return bool(raw)
    kind, element = ty[0], ty[1]
    if kind in ("list", "set"):
        return [decode(element, item) for item in raw]
    if kind == "tuple":
        return [decode(t, item) for t, item in zip(element, raw, strict=True)]
    if kind == "map":
        return {str(k): decode(element, v) for k, v in raw.items()}
    if kind == "object":
        return {name: decode(element[name], raw.get(name)) for name in element}
    raise CtyError(f"unknown type {ty!r}")


def encode(ty: TypeJSON, value: Any) -> Any:
    """The MessagePack item Terraform expects for `value` of type `ty`."""
    if value is UNKNOWN:
        return Ext(0, b"\x00")
    if value is None:
        return None
    if ty == "dynamic":
        if not isinstance(value, Dyn):
            value = Dyn(infer_type(value), value)
        return [type_bytes(value.type), encode(value.type, value.value)]
    if isinstance(value, Dyn):
        return encode(ty, value.value)
    if ty in ("string", "number", "bool"):
        return value
    kind, element = ty[0], ty[1]
    if kind in ("list", "set"):
        return [encode(element, item) for item in value]
    if kind == "tuple":
        return [encode(t, item) for t, item in zip(element, value, strict=True)]
    if kind == "map":
        return {k: encode(element, v) for k, v in value.items()}
    if kind == "object":
        return {name: encode(element[name], value.get(name)) for name in element}
    raise CtyError(f"unknown type {ty!r}")


def infer_type(value: Any) -> TypeJSON:
    """The cty type of a plain Python value (for values the stand-in makes up itself)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return ["tuple", [infer_type(v) for v in value]]
    if isinstance(value, dict):
        return ["object", {k: infer_type(v) for k, v in value.items()}]
    raise CtyError(f"cannot infer a type for {type(value).__name__}")


def placeholder(ty: TypeJSON, name: str) -> Any:
    """A known stand-in value of type `ty` for an attribute the provider would compute."""
    if ty in ("string", "dynamic"):
        return f"standin-{name}"
    if ty == "number":
        return 0
    if ty == "bool":
        return False
    kind = ty[0]
    if kind in ("list", "set", "tuple"):
        return []
    if kind == "map":
        return {}
    return {attr: placeholder(t, attr) for attr, t in ty[1].items()}


def to_plain(value: Any) -> Any:
    """The value with `Dyn` wrappers removed (for the stand-in's own logic)."""
    if isinstance(value, Dyn):
        return to_plain(value.value)
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def is_wholly_known(value: Any) -> bool:
    if value is UNKNOWN:
        return False
    if isinstance(value, Dyn):
        return is_wholly_known(value.value)
    if isinstance(value, list):
        return all(is_wholly_known(v) for v in value)
    if isinstance(value, dict):
        return all(is_wholly_known(v) for v in value.values())
    return True


def decode_json(ty: TypeJSON, raw: Any) -> Any:
    """Python value of JSON-encoded state (no unknowns; dynamic values carry their type)."""
    if raw is None:
        return None
    if ty == "dynamic":
        return Dyn(raw["type"], decode_json(raw["type"], raw["value"]))
    if ty in ("string", "number", "bool"):
        return raw
    kind, element = ty[0], ty[1]
    if kind in ("list", "set"):
        return [decode_json(element, item) for item in raw]
    if kind == "tuple":
        return [decode_json(t, item) for t, item in zip(element, raw, strict=True)]
    if kind == "map":
        return {k: decode_json(element, v) for k, v in raw.items()}
    return {name: decode_json(element[name], raw.get(name)) for name in element}
