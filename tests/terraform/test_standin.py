"""The stand-in providers without Terraform: wire encoding, planning rules, schema, gRPC."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import grpc
import pytest
from tfstandin import cty, msgpack, protocol, schema
from tfstandin.archive import read_archive_file
from tfstandin.provider import Provider, fill_block, plan_block
from tfstandin.server import ARCHIVE, GOOGLE, TIME, build_providers, reattach_value, serve_all

SCHEMAS = schema.SCHEMAS


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        127,
        128,
        -1,
        -33,
        2**40,
        -(2**40),
        1.5,
        "",
        "x" * 40,
        "é" * 300,
        b"\x00\x01",
        [1, [2, "three"]],
        {"a": {"b": None}},
        list(range(20)),
        {str(i): i for i in range(20)},
        msgpack.Ext(0, b"\x00"),
        msgpack.Ext(12, b"\x81\x01\xc3"),
    ],
)
def test_msgpack_round_trips(value: Any) -> None:
    assert msgpack.unpackb(msgpack.packb(value)) == value


def test_unknown_values_use_terraform_s_extension_both_ways() -> None:
    ty = ["object", {"email": "string", "tags": ["list", "string"]}]
    encoded = msgpack.packb(cty.encode(ty, {"email": cty.UNKNOWN, "tags": ["a"]}))
    assert msgpack.unpackb(encoded)["email"] == msgpack.Ext(0, b"\x00")
    assert cty.decode(ty, msgpack.unpackb(encoded)) == {"email": cty.UNKNOWN, "tags": ["a"]}
    refined = msgpack.Ext(12, b"\x81\x01\xc3")  # an unknown with refinements (not null)
    assert cty.decode("string", refined) is cty.UNKNOWN


def test_dynamic_values_keep_their_type() -> None:
    raw = [b'["list","string"]', ["a", "b"]]
    value = cty.decode("dynamic", raw)
    assert value == cty.Dyn(["list", "string"], ["a", "b"])
    assert cty.encode("dynamic", value) == [b'["list","string"]', ["a", "b"]]
    assert cty.encode("dynamic", "made up")[0] == b'"string"'


def test_plan_keeps_config_and_makes_null_computed_attributes_unknown_on_create() -> None:
    block = schema.parse_block(
        {
            "attributes": {
                "name": {"type": "string", "required": True},
                "labels": {"type": ["map", "string"], "optional": True, "computed": True},
                "email": {"type": "string", "computed": True},
                "note": {"type": "string", "optional": True},
            },
            "blocks": {"inner": {"attributes": {"uri": {"type": "string", "computed": True}}}},
        },
        "t",
    )
    proposed = {"name": "a", "labels": None, "email": None, "note": None, "inner": [{"uri": None}]}
    planned = plan_block(block, proposed, creating=True)
    assert planned == {
        "name": "a",
        "labels": cty.UNKNOWN,
        "email": cty.UNKNOWN,
        "note": None,  # optional, not computed: stays null
        "inner": [{"uri": cty.UNKNOWN}],
    }
    # An update keeps what Terraform proposed (prior values of computed attributes included).
    assert plan_block(block, proposed, creating=False) == proposed


def test_data_sources_get_known_placeholders() -> None:
    google = schema.load_google()
    state = fill_block(google.data_sources["google_project"], {"id": None, "project_id": "p"})
    assert state["project_id"] == "p" and state["number"].isdigit()
    assert cty.is_wholly_known(state)


def test_vendored_schema_matches_its_provenance_note() -> None:
    note = (SCHEMAS / "README.md").read_text()
    digest = hashlib.sha256((SCHEMAS / "google-provider-schema.json").read_bytes()).hexdigest()
    assert digest in note
    version = json.loads((SCHEMAS / "google-provider-schema.json").read_text())["provider_version"]
    assert f"hashicorp/google {version}" in note


def test_overlay_only_types_what_the_vendored_schema_has() -> None:
    google = schema.load_google()  # raises SchemaError on a mismatch
    fn = google.resources["google_cloudfunctions2_function"]
    uri = fn.blocks["service_config"].block.attributes["uri"]
    assert uri.computed and not uri.optional  # output-only: configuring it is an error
    assert fn.attributes["name"].required
    bad = {"attributes": {"nope": {"type": "string"}}}
    with pytest.raises(schema.SchemaError):
        schema.merge_block({"attributes": {}, "blocks": {}}, bad, "x")


def test_every_type_the_project_uses_is_served() -> None:
    used: set[str] = set()
    for tf in (SCHEMAS.parents[2] / "terraform").rglob("*.tf"):
        used |= set(re.findall(r'^(?:resource|data) "(google_\w+)"', tf.read_text(), re.M))
    google = schema.load_google()
    missing = {t for t in used if t not in google.resources and t not in google.data_sources}
    assert not missing


def test_archive_file_builds_the_zip_and_hashes_it(tmp_path: Path) -> None:
    out = tmp_path / "a.zip"
    state = read_archive_file(
        {
            "type": "zip",
            "output_path": str(out),
            "source": [
                {"filename": "b.txt", "content": "B"},
                {"filename": "a.txt", "content": "A"},
            ],
        }
    )
    assert zipfile.ZipFile(out).namelist() == ["a.txt", "b.txt"]
    assert state["output_md5"] == hashlib.md5(out.read_bytes()).hexdigest()
    again = read_archive_file(
        {
            "type": "zip",
            "output_path": "a.zip",  # relative: to the folder Terraform runs in
            "source_content": "x",
            "source_content_filename": "x",
        },
        base=tmp_path,
    )
    assert again["output_size"] == out.stat().st_size
    assert again["output_path"] == "a.zip"  # the state keeps what was configured
    with pytest.raises(ValueError, match="needs one of"):
        read_archive_file({"type": "zip", "output_path": str(out)})


def call(channel: grpc.Channel, method: str, request: Any) -> Any:
    _, response_name = protocol.METHODS[method]
    stub = channel.unary_unary(
        f"/{protocol.SERVICE}/{method}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=protocol.MESSAGES[response_name].FromString,
    )
    return stub(request, timeout=30)


def test_grpc_service_answers_schema_and_plan(tmp_path: Path) -> None:
    providers = build_providers()
    assert set(providers) == {GOOGLE, ARCHIVE, TIME}
    served = serve_all(tmp_path, providers)
    try:
        reattach = json.loads(reattach_value(served))
        assert reattach[GOOGLE]["ProtocolVersion"] == 6 and reattach[GOOGLE]["Test"] is True
        with grpc.insecure_channel(f"unix:{reattach[GOOGLE]['Addr']['String']}") as channel:
            response = call(channel, "GetProviderSchema", protocol.new("Empty"))
            types = {entry.key for entry in response.resource_schemas}
            assert "google_cloudfunctions2_function" in types and len(types) > 1000
            assert [a.name for a in response.provider_meta.block.attributes] == ["module_name"]

            provider: Provider = providers[GOOGLE]
            ty = provider.value_type("resource", "google_service_account")
            config: dict[str, Any] = {name: None for name in ty[1]}
            config.update(account_id="redrive-runtime", project="p")
            dv = protocol.new("DynamicValue", msgpack=msgpack.packb(cty.encode(ty, config)))
            request = protocol.new(
                "PlanResourceChange_Request",
                type_name="google_service_account",
                prior_state=protocol.new("DynamicValue", msgpack=msgpack.packb(None)),
                proposed_new_state=dv,
                config=dv,
            )
            planned = call(channel, "PlanResourceChange", request)
            value = cty.decode(ty, msgpack.unpackb(planned.planned_state.msgpack))
            assert value["account_id"] == "redrive-runtime"
            assert value["email"] is cty.UNKNOWN and value["id"] is cty.UNKNOWN

            apply = call(
                channel,
                "ApplyResourceChange",
                protocol.new("ApplyResourceChange_Request", type_name="google_service_account"),
            )
            assert apply.diagnostics[0].severity == protocol.SEVERITY_ERROR
    finally:
        for s in served:
            s.stop()
