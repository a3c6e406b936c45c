"""Provider schemas: the vendored name-level schema made whole with a typed overlay.

The vendored google schema (`schemas/google-provider-schema.json`) lists, for every resource and
data source type of the real provider, its configurable attributes (with `required`) and nested
blocks. It leaves out attribute types and the output-only (computed) attributes. The overlay
(`schemas/google-overlay.json`) adds, from the provider's documentation, the types of the attributes
the module uses, the output-only attributes it reads (`email`, `writer_identity`,
`service_config.uri`, ...) and the nesting of blocks that are not lists. What the overlay does not
type is `dynamic` (Terraform accepts any value there), and every optional attribute is
optional+computed, which is what lets a plan show it as unknown: "known after apply".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfstandin import protocol
from tfstandin.cty import TypeJSON, type_bytes

SCHEMAS = Path(__file__).resolve().parent / "schemas"


@dataclass(frozen=True)
class Attribute:
    type: TypeJSON
    required: bool = False
    optional: bool = False
    computed: bool = False
    sensitive: bool = False
    placeholder: Any = None  # what a data source read returns when the config leaves it null


@dataclass(frozen=True)
class NestedBlock:
    block: Block
    nesting: str = "list"
    min_items: int = 0
    max_items: int = 0


@dataclass(frozen=True)
class Block:
    attributes: dict[str, Attribute] = field(default_factory=dict)
    blocks: dict[str, NestedBlock] = field(default_factory=dict)

    def implied_type(self) -> TypeJSON:
        members: dict[str, TypeJSON] = {n: a.type for n, a in self.attributes.items()}
        for name, nested in self.blocks.items():
            inner = nested.block.implied_type()
            if nested.nesting in ("single", "group"):
                members[name] = inner
            elif nested.nesting in ("list", "map") and has_dynamic(inner):
                members[name] = "dynamic"  # Terraform's rule: a tuple or object per value
            else:
                members[name] = [nested.nesting, inner]
        return ["object", members]


def has_dynamic(ty: TypeJSON) -> bool:
    if ty == "dynamic":
        return True
    if isinstance(ty, str):
        return False
    if ty[0] == "object":
        return any(has_dynamic(t) for t in ty[1].values())
    if ty[0] == "tuple":
        return any(has_dynamic(t) for t in ty[1])
    return has_dynamic(ty[1])


@dataclass(frozen=True)
class ProviderSchema:
    name: str
    version: str
    provider: Block
    resources: dict[str, Block]
    data_sources: dict[str, Block]
    provider_meta: Block | None = None


class SchemaError(ValueError):
    """The vendored schema and the overlay do not fit together."""


def parse_block(spec: dict[str, Any], where: str) -> Block:
    """A block in the stand-in's own complete form (types, flags and nesting all given)."""
    attributes = {
        name: Attribute(
            type=a["type"],
            required=a.get("required", False),
            optional=a.get("optional", not a.get("required", False) and not a.get("computed")),
            computed=a.get("computed", False),
            sensitive=a.get("sensitive", False),
            placeholder=a.get("placeholder"),
        )
        for name, a in spec.get("attributes", {}).items()
    }
    blocks = {
        name: NestedBlock(
            block=parse_block(b, f"{where}.{name}"),
            nesting=b.get("nesting", "list"),
            min_items=b.get("min_items", 0),
            max_items=b.get("max_items", 0),
        )
        for name, b in spec.get("blocks", {}).items()
    }
    return Block(attributes, blocks)


def merge_block(vendored: dict[str, Any], overlay: dict[str, Any], where: str) -> Block:
    """A vendored name-level block typed by its overlay.

    Untyped attributes are strings (numbers and bools given there convert to strings): a
    concrete type keeps Terraform's reference checks strict (a `dynamic` attribute would make its
    whole list block `dynamic`, where any attribute name is accepted), and set-nested blocks may
    not hold dynamic attributes at all. A list or map given to an untyped attribute fails
    validation: type that attribute in the overlay.
    """
    typed = overlay.get("attributes", {})
    default_type = "string"
    attributes: dict[str, Attribute] = {}
    for name, a in vendored.get("attributes", {}).items():
        extra = typed.get(name, {})
        if extra.get("computed_only"):
            raise SchemaError(f"{where}.{name}: configurable in the schema, output-only in overlay")
        required = bool(a.get("required"))
        attributes[name] = Attribute(
            type=extra.get("type", default_type),
            required=required,
            optional=not required,
            computed=not required,
            sensitive=extra.get("sensitive", False),
            placeholder=extra.get("placeholder"),
        )
    for name, extra in typed.items():
        if name in attributes:
            continue
        if not extra.get("computed_only"):
            raise SchemaError(f"{where}.{name}: not in the vendored schema and not output-only")
        attributes[name] = Attribute(
            type=extra.get("type", "string"), computed=True, placeholder=extra.get("placeholder")
        )
    overlay_blocks = overlay.get("blocks", {})
    unknown = set(overlay_blocks) - set(vendored.get("blocks", {}))
    if unknown:
        raise SchemaError(f"{where}: overlay blocks not in the vendored schema: {sorted(unknown)}")
    blocks: dict[str, NestedBlock] = {}
    for name, b in vendored.get("blocks", {}).items():
        extra = overlay_blocks.get(name, {})
        nesting = extra.get("nesting", "list")
        blocks[name] = NestedBlock(
            block=merge_block(b, extra, f"{where}.{name}"),
            nesting=nesting,
            min_items=1 if b.get("required") else 0,
            max_items=extra.get("max_items", 0),
        )
    return Block(attributes, blocks)


def load_google() -> ProviderSchema:
    vendored = json.loads((SCHEMAS / "google-provider-schema.json").read_text())
    overlay = json.loads((SCHEMAS / "google-overlay.json").read_text())
    resources: dict[str, Block] = {}
    data_sources: dict[str, Block] = {}
    for kind, target in (("resource", resources), ("data", data_sources)):
        extra = overlay.get(kind, {})
        unknown = set(extra) - set(vendored[kind])
        if unknown:
            raise SchemaError(f"overlay {kind} types not in the vendored schema: {sorted(unknown)}")
        for type_name, spec in vendored[kind].items():
            target[type_name] = merge_block(spec, extra.get(type_name, {}), type_name)
    return ProviderSchema(
        name="google",
        version=str(vendored["provider_version"]),
        provider=parse_block(overlay["provider"], "provider"),
        resources=resources,
        data_sources=data_sources,
        provider_meta=parse_block(overlay["provider_meta"], "provider_meta"),
    )


def load_complete(filename: str, name: str) -> ProviderSchema:
    """A provider schema written whole in the stand-in's form (the archive provider)."""
    spec = json.loads((SCHEMAS / filename).read_text())
    return ProviderSchema(
        name=name,
        version=str(spec["provider_version"]),
        provider=parse_block(spec.get("provider", {}), "provider"),
        resources={t: parse_block(b, t) for t, b in spec.get("resource", {}).items()},
        data_sources={t: parse_block(b, t) for t, b in spec.get("data", {}).items()},
    )


def block_message(block: Block) -> Any:
    msg = protocol.new("Schema_Block")
    for name, a in sorted(block.attributes.items()):
        msg.attributes.append(
            protocol.new(
                "Schema_Attribute",
                name=name,
                type=type_bytes(a.type),
                required=a.required,
                optional=a.optional,
                computed=a.computed,
                sensitive=a.sensitive,
            )
        )
    for name, nested in sorted(block.blocks.items()):
        msg.block_types.append(
            protocol.new(
                "Schema_NestedBlock",
                type_name=name,
                block=block_message(nested.block),
                nesting=protocol.NESTING[nested.nesting],
                min_items=nested.min_items,
                max_items=nested.max_items,
            )
        )
    return msg


def schema_message(block: Block) -> Any:
    return protocol.new("Schema", version=0, block=block_message(block))
