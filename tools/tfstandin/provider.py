"""The provider service: what Terraform core asks a provider during validate and plan.

Validation is Terraform's own (types, required attributes, block counts, references): a provider
adds only its resource-specific rules, which the stand-in does not know, so it answers without
diagnostics. Planning follows the real providers' contract: configured values are kept, and every
computed attribute the configuration leaves null becomes unknown on create ("known after apply"),
so whatever depends on it (a `for_each` key, a `count`) is unknown to Terraform exactly as it
would be with the real provider. Data sources are read at plan time, so their computed attributes
get known placeholder values; the archive provider's `archive_file` really builds its zip.
Apply is refused: the stand-in never talks to a cloud.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import grpc

from tfstandin import cty, msgpack, protocol
from tfstandin.schema import Block, ProviderSchema, schema_message

log = logging.getLogger("tfstandin")

DataReader = Callable[[dict[str, Any]], dict[str, Any]]


def plan_block(block: Block, proposed: Any, creating: bool) -> Any:
    """The planned value of a block: config kept, null computed attributes unknown on create."""
    if proposed is None or proposed is cty.UNKNOWN:
        return proposed
    out: dict[str, Any] = {}
    for name, attr in block.attributes.items():
        value = proposed.get(name)
        out[name] = cty.UNKNOWN if value is None and attr.computed and creating else value
    for name, nested in block.blocks.items():
        out[name] = _each(
            nested.nesting, proposed.get(name), partial(plan_block, nested.block, creating=creating)
        )
    return out


def _each(nesting: str, value: Any, fn: Callable[[Any], Any]) -> Any:
    """`fn` applied to each object of a nested block's value (kept as it is when null/unknown)."""
    if isinstance(value, cty.Dyn):  # a list or map block holding dynamic attributes
        return cty.Dyn(value.type, _each(nesting, value.value, fn))
    if value is None or value is cty.UNKNOWN:
        return value
    if nesting in ("single", "group"):
        return fn(value)
    if isinstance(value, dict):
        return {k: fn(v) for k, v in value.items()}
    return [fn(v) for v in value]


def fill_block(block: Block, config: Any) -> Any:
    """A data source's state: config kept, null computed attributes set to known placeholders."""
    if config is None:
        return None
    out: dict[str, Any] = {}
    for name, attr in block.attributes.items():
        value = config.get(name)
        if value is None and attr.computed:
            value = (
                attr.placeholder
                if attr.placeholder is not None
                else cty.placeholder(attr.type, name)
            )
        out[name] = value
    for name, nested in block.blocks.items():
        out[name] = _each(nested.nesting, config.get(name), partial(fill_block, nested.block))
    return out


def diagnostic(summary: str, detail: str = "", severity: int = protocol.SEVERITY_ERROR) -> Any:
    return protocol.new("Diagnostic", severity=severity, summary=summary, detail=detail)


class Provider:
    """One provider's tfplugin6 service, backed by its schema."""

    def __init__(self, schema: ProviderSchema, readers: dict[str, DataReader] | None = None):
        self.schema = schema
        self.readers = readers or {}
        self._types: dict[tuple[str, str], Any] = {}
        self._schema_response: Any = None
        self.calls: list[str] = []

    # -- helpers ---------------------------------------------------------------------------

    def _block(self, kind: str, type_name: str) -> Block:
        table = self.schema.resources if kind == "resource" else self.schema.data_sources
        return table[type_name]

    def value_type(self, kind: str, type_name: str) -> Any:
        key = (kind, type_name)
        if key not in self._types:
            self._types[key] = self._block(kind, type_name).implied_type()
        return self._types[key]

    def _decode(self, kind: str, type_name: str, value: Any) -> Any:
        if not value.msgpack:
            return None
        return cty.decode(self.value_type(kind, type_name), msgpack.unpackb(value.msgpack))

    def _encode(self, kind: str, type_name: str, value: Any) -> Any:
        raw = msgpack.packb(cty.encode(self.value_type(kind, type_name), value))
        return protocol.new("DynamicValue", msgpack=raw)

    # -- schema ----------------------------------------------------------------------------

    def get_metadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("GetMetadata")
        return protocol.new(
            "GetMetadata_Response",
            server_capabilities=protocol.new("ServerCapabilities"),
            resources=[protocol.new("TypeName", type_name=t) for t in self.schema.resources],
            data_sources=[protocol.new("TypeName", type_name=t) for t in self.schema.data_sources],
        )

    def get_provider_schema(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("GetProviderSchema")
        if self._schema_response is None:
            response = protocol.new(
                "GetProviderSchema_Response",
                provider=schema_message(self.schema.provider),
                server_capabilities=protocol.new("ServerCapabilities"),
            )
            for type_name, block in self.schema.resources.items():
                response.resource_schemas.append(
                    protocol.new("SchemaEntry", key=type_name, value=schema_message(block))
                )
            for type_name, block in self.schema.data_sources.items():
                response.data_source_schemas.append(
                    protocol.new("SchemaEntry", key=type_name, value=schema_message(block))
                )
            if self.schema.provider_meta is not None:
                response.provider_meta.CopyFrom(schema_message(self.schema.provider_meta))
            self._schema_response = response
        return self._schema_response

    def get_functions(self, request: Any, context: grpc.ServicerContext) -> Any:
        return protocol.new("GetFunctions_Response")

    # -- validation and configuration ------------------------------------------------------

    def validate_provider_config(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("ValidateProviderConfig")
        return protocol.new("ValidateProviderConfig_Response")

    def validate_resource_config(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(f"ValidateResourceConfig {request.type_name}")
        return protocol.new("Diagnostics_Response")

    def validate_data_resource_config(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(f"ValidateDataResourceConfig {request.type_name}")
        return protocol.new("Diagnostics_Response")

    def validate_ephemeral_resource_config(
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        return protocol.new(
            "Diagnostics_Response", diagnostics=[diagnostic("no ephemeral resources here")]
        )

    def configure_provider(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append("ConfigureProvider")
        return protocol.new("Diagnostics_Response")

    def stop_provider(self, request: Any, context: grpc.ServicerContext) -> Any:
        return protocol.new("StopProvider_Response")

    # -- managed resources -----------------------------------------------------------------

    def upgrade_resource_state(self, request: Any, context: grpc.ServicerContext) -> Any:
        """State written by the stand-in is already current: JSON state re-encoded."""
        block_type = self.value_type("resource", request.type_name)
        raw = json.loads(request.raw_state.json) if request.raw_state.json else None
        value = cty.decode_json(block_type, raw)
        return protocol.new(
            "UpgradeResourceState_Response",
            upgraded_state=self._encode("resource", request.type_name, value),
        )

    def read_resource(self, request: Any, context: grpc.ServicerContext) -> Any:
        return protocol.new(
            "ReadResource_Response",
            new_state=request.current_state,
            private=request.private,
        )

    def plan_resource_change(self, request: Any, context: grpc.ServicerContext) -> Any:
        type_name = request.type_name
        self.calls.append(f"PlanResourceChange {type_name}")
        prior = self._decode("resource", type_name, request.prior_state)
        proposed = self._decode("resource", type_name, request.proposed_new_state)
        planned = plan_block(self._block("resource", type_name), proposed, creating=prior is None)
        return protocol.new(
            "PlanResourceChange_Response",
            planned_state=self._encode("resource", type_name, planned),
            planned_private=request.prior_private,
        )

    def apply_resource_change(self, request: Any, context: grpc.ServicerContext) -> Any:
        return protocol.new(
            "ApplyResourceChange_Response",
            diagnostics=[
                diagnostic(
                    "The offline stand-in provider cannot apply",
                    f"{self.schema.name} is served by tfstandin for validate and plan only.",
                )
            ],
        )

    def import_resource_state(self, request: Any, context: grpc.ServicerContext) -> Any:
        return protocol.new(
            "ImportResourceState_Response",
            diagnostics=[diagnostic("The offline stand-in provider cannot import")],
        )

    # -- data sources ----------------------------------------------------------------------

    def read_data_source(self, request: Any, context: grpc.ServicerContext) -> Any:
        type_name = request.type_name
        self.calls.append(f"ReadDataSource {type_name}")
        config = self._decode("data", type_name, request.config)
        try:
            if type_name in self.readers:
                state = self.readers[type_name](cty.to_plain(config))
            else:
                state = fill_block(self._block("data", type_name), config)
        except (OSError, ValueError) as exc:
            return protocol.new(
                "ReadDataSource_Response",
                diagnostics=[diagnostic(f"Cannot read data.{type_name}", str(exc))],
            )
        return protocol.new("ReadDataSource_Response", state=self._encode("data", type_name, state))


def rpc_method_name(rpc: str) -> str:
    """The Python method serving an RPC: PlanResourceChange -> plan_resource_change."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", rpc).lower()


def generic_handler(provider: Provider) -> grpc.GenericRpcHandler:
    handlers = {}
    for method, (request_name, response_name) in protocol.METHODS.items():
        handlers[method] = grpc.unary_unary_rpc_method_handler(
            getattr(provider, rpc_method_name(method)),
            request_deserializer=protocol.MESSAGES[request_name].FromString,
            response_serializer=protocol.MESSAGES[response_name].SerializeToString,
        )
    return grpc.method_handlers_generic_handler(protocol.SERVICE, handlers)
