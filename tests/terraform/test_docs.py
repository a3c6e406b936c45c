"""Generated documentation is current: the module README's tables and the dashboard picture."""

from __future__ import annotations

import json

import pytest
from tfdocs import dashboard, inputs
from tfstandin.check import check

from tests.terraform.conftest import EXAMPLE, EXAMPLE_VARS, MODULE

DOCS = MODULE / "docs"


def test_readme_inputs_and_outputs_are_generated_from_the_hcl() -> None:
    readme = MODULE / "README.md"
    assert inputs.update(readme, MODULE) == readme.read_text(), (
        "terraform/README.md is stale: PYTHONPATH=tools python -m tfdocs readme terraform"
    )


def test_every_variable_and_output_is_in_the_tables() -> None:
    text = inputs.tables(MODULE)
    for name in inputs.load(MODULE, "variables.tf", "variable"):
        assert f"| `{name}` |" in text
    for name in inputs.load(MODULE, "outputs.tf", "output"):
        assert f"| `{name}` |" in text
    assert "| `signal_function` | `max_instance_request_concurrency` | `number` | `1` |" in text


@pytest.mark.parametrize(
    ("type_expr", "paths"),
    [
        ("object({a = optional(number, 1), b = string})", ["a", "b"]),
        ("object({x = optional(object({y = optional(bool, false)}), {})})", ["x.y"]),
        ('object({f = optional(string, "a, b")})', ["f"]),
    ],
)
def test_object_fields_are_read_field_by_field(type_expr: str, paths: list[str]) -> None:
    fields = inputs.object_fields(type_expr)
    assert fields is not None and [f.path for f in fields] == paths
    assert inputs.object_fields("map(string)") is None


def test_dashboard_picture_is_rendered_from_the_committed_json() -> None:
    svg = dashboard.render(dashboard.load(DOCS / "dashboard.json"))
    assert svg == (DOCS / "dashboard.svg").read_text(), (
        "terraform/docs/dashboard.svg is stale: PYTHONPATH=tools python -m tfdocs dashboard"
    )
    tiles = dashboard.load(DOCS / "dashboard.json")["mosaicLayout"]["tiles"]
    for tile in tiles:
        assert tile["widget"]["title"].split(" (")[0][:20] in svg


def test_committed_dashboard_json_is_what_the_example_plans(terraform: str) -> None:
    result = check(EXAMPLE, variables=EXAMPLE_VARS, terraform=terraform)
    assert result.ok, result.output
    planned = result.planned_resources()["module.redrive.google_monitoring_dashboard.main[0]"]
    assert json.loads(planned["dashboard_json"]) == dashboard.load(DOCS / "dashboard.json")
