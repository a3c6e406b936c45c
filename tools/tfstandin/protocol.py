"""The subset of Terraform's plugin protocol 6 (tfplugin6) the stand-in serves, built at run time.

The messages are declared here by field number and type (the wire contract of the protocol,
documented with Terraform's plugin-protocol definitions), so no generated code and no protoc run
are needed. Names are flattened (`PlanResourceChange_Request`): only field numbers and types are on
the wire. Enums are declared as int32 and maps as repeated key/value entries, both of which have the
same encoding. Fields the stand-in never reads (client capabilities, deferrals) are left out;
protobuf keeps them as unknown fields.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "tfstandin.tfplugin6"
SERVICE = "tfplugin6.Provider"
CONTROLLER_SERVICE = "plugin.GRPCController"
HEALTH_SERVICE = "grpc.health.v1.Health"

# name -> [(field, number, type)]; a type starting with "*" is repeated, a capitalised type is a
# message of this table.
_MESSAGES: dict[str, list[tuple[str, int, str]]] = {
    "DynamicValue": [("msgpack", 1, "bytes"), ("json", 2, "bytes")],
    "AttributePath_Step": [
        ("attribute_name", 1, "string"),
        ("element_key_string", 2, "string"),
        ("element_key_int", 3, "int64"),
    ],
    "AttributePath": [("steps", 1, "*AttributePath_Step")],
    "Diagnostic": [
        ("severity", 1, "int32"),  # 1 error, 2 warning
        ("summary", 2, "string"),
        ("detail", 3, "string"),
        ("attribute", 4, "AttributePath"),
    ],
    "Schema_Attribute": [
        ("name", 1, "string"),
        ("type", 2, "bytes"),
        ("description", 3, "string"),
        ("required", 4, "bool"),
        ("optional", 5, "bool"),
        ("computed", 6, "bool"),
        ("sensitive", 7, "bool"),
        ("description_kind", 8, "int32"),
        ("deprecated", 9, "bool"),
    ],
    "Schema_Block": [
        ("version", 1, "int64"),
        ("attributes", 2, "*Schema_Attribute"),
        ("block_types", 3, "*Schema_NestedBlock"),
        ("description", 4, "string"),
        ("description_kind", 5, "int32"),
        ("deprecated", 6, "bool"),
    ],
    "Schema_NestedBlock": [
        ("type_name", 1, "string"),
        ("block", 2, "Schema_Block"),
        ("nesting", 3, "int32"),  # 1 single, 2 list, 3 set, 4 map, 5 group
        ("min_items", 4, "int64"),
        ("max_items", 5, "int64"),
    ],
    "Schema": [("version", 1, "int64"), ("block", 2, "Schema_Block")],
    "SchemaEntry": [("key", 1, "string"), ("value", 2, "Schema")],
    "ServerCapabilities": [
        ("plan_destroy", 1, "bool"),
        ("get_provider_schema_optional", 2, "bool"),
        ("move_resource_state", 3, "bool"),
    ],
    "Empty": [],
    "TypeName": [("type_name", 1, "string")],
    "GetMetadata_Response": [
        ("server_capabilities", 1, "ServerCapabilities"),
        ("diagnostics", 2, "*Diagnostic"),
        ("data_sources", 3, "*TypeName"),
        ("resources", 4, "*TypeName"),
    ],
    "GetProviderSchema_Response": [
        ("provider", 1, "Schema"),
        ("resource_schemas", 2, "*SchemaEntry"),
        ("data_source_schemas", 3, "*SchemaEntry"),
        ("diagnostics", 4, "*Diagnostic"),
        ("provider_meta", 5, "Schema"),
        ("server_capabilities", 6, "ServerCapabilities"),
    ],
    "ValidateProviderConfig_Request": [("config", 1, "DynamicValue")],
    "ValidateProviderConfig_Response": [("diagnostics", 2, "*Diagnostic")],
    "ValidateConfig_Request": [("type_name", 1, "string"), ("config", 2, "DynamicValue")],
    "Diagnostics_Response": [("diagnostics", 1, "*Diagnostic")],
    "RawState": [("json", 1, "bytes")],
    "UpgradeResourceState_Request": [
        ("type_name", 1, "string"),
        ("version", 2, "int64"),
        ("raw_state", 3, "RawState"),
    ],
    "UpgradeResourceState_Response": [
        ("upgraded_state", 1, "DynamicValue"),
        ("diagnostics", 2, "*Diagnostic"),
    ],
    "ConfigureProvider_Request": [
        ("terraform_version", 1, "string"),
        ("config", 2, "DynamicValue"),
    ],
    "ReadResource_Request": [
        ("type_name", 1, "string"),
        ("current_state", 2, "DynamicValue"),
        ("private", 3, "bytes"),
    ],
    "ReadResource_Response": [
        ("new_state", 1, "DynamicValue"),
        ("diagnostics", 2, "*Diagnostic"),
        ("private", 3, "bytes"),
    ],
    "PlanResourceChange_Request": [
        ("type_name", 1, "string"),
        ("prior_state", 2, "DynamicValue"),
        ("proposed_new_state", 3, "DynamicValue"),
        ("config", 4, "DynamicValue"),
        ("prior_private", 5, "bytes"),
    ],
    "PlanResourceChange_Response": [
        ("planned_state", 1, "DynamicValue"),
        ("requires_replace", 2, "*AttributePath"),
        ("planned_private", 3, "bytes"),
        ("diagnostics", 4, "*Diagnostic"),
    ],
    "ApplyResourceChange_Request": [
        ("type_name", 1, "string"),
        ("prior_state", 2, "DynamicValue"),
        ("planned_state", 3, "DynamicValue"),
        ("config", 4, "DynamicValue"),
    ],
    "ApplyResourceChange_Response": [
        ("new_state", 1, "DynamicValue"),
        ("private", 2, "bytes"),
        ("diagnostics", 3, "*Diagnostic"),
    ],
    "ImportResourceState_Request": [("type_name", 1, "string"), ("id", 2, "string")],
    "ImportResourceState_Response": [("diagnostics", 2, "*Diagnostic")],
    "ReadDataSource_Request": [("type_name", 1, "string"), ("config", 2, "DynamicValue")],
    "ReadDataSource_Response": [("state", 1, "DynamicValue"), ("diagnostics", 2, "*Diagnostic")],
    "GetFunctions_Response": [("diagnostics", 2, "*Diagnostic")],
    "StopProvider_Response": [("Error", 1, "string")],
    "HealthCheckResponse": [("status", 1, "int32")],  # 1 serving
}

_SCALARS = {
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
}


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tfstandin_tfplugin6.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for field_name, number, type_name in fields:
            repeated = type_name.startswith("*")
            base = type_name.lstrip("*")
            field = msg.field.add(name=field_name, number=number)
            field.label = (
                descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
                if repeated
                else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
            )
            if base in _SCALARS:
                field.type = _SCALARS[base]
            else:
                field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
                field.type_name = f".{PACKAGE}.{base}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in _MESSAGES
    }


MESSAGES = _build()


def new(message: str, /, **fields: Any) -> Any:
    """A new message of the table above."""
    return MESSAGES[message](**fields)


# RPC method -> (request message, response message). Requests Terraform sends with fields this
# table leaves out still parse (unknown fields are kept, never read).
METHODS: dict[str, tuple[str, str]] = {
    "GetMetadata": ("Empty", "GetMetadata_Response"),
    "GetProviderSchema": ("Empty", "GetProviderSchema_Response"),
    "ValidateProviderConfig": ("ValidateProviderConfig_Request", "ValidateProviderConfig_Response"),
    "ValidateResourceConfig": ("ValidateConfig_Request", "Diagnostics_Response"),
    "ValidateDataResourceConfig": ("ValidateConfig_Request", "Diagnostics_Response"),
    "ValidateEphemeralResourceConfig": ("ValidateConfig_Request", "Diagnostics_Response"),
    "UpgradeResourceState": ("UpgradeResourceState_Request", "UpgradeResourceState_Response"),
    "ConfigureProvider": ("ConfigureProvider_Request", "Diagnostics_Response"),
    "ReadResource": ("ReadResource_Request", "ReadResource_Response"),
    "PlanResourceChange": ("PlanResourceChange_Request", "PlanResourceChange_Response"),
    "ApplyResourceChange": ("ApplyResourceChange_Request", "ApplyResourceChange_Response"),
    "ImportResourceState": ("ImportResourceState_Request", "ImportResourceState_Response"),
    "ReadDataSource": ("ReadDataSource_Request", "ReadDataSource_Response"),
    "GetFunctions": ("Empty", "GetFunctions_Response"),
    "StopProvider": ("Empty", "StopProvider_Response"),
}

NESTING = {"single": 1, "list": 2, "set": 3, "map": 4, "group": 5}
SEVERITY_ERROR = 1
SEVERITY_WARNING = 2
