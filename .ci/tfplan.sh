#!/usr/bin/env bash
# Offline `terraform validate` and `terraform plan` of the module and of examples/complete, from a
# fresh state, with Terraform core against the stand-in providers (tools/tfstandin: the vendored
# google provider schema, archive and time, served over the plugin protocol and attached through
# TF_REATTACH_PROVIDERS); then the known-bad configuration, which must fail; then the generated
# docs (the module README's inputs/outputs tables, the dashboard picture) must be current.
# Needs `make venv` first (grpcio, protobuf and python-hcl2 come from the project's requirements).
set -euo pipefail
cd "$(dirname "$0")/.."

py=.venv/bin/python
[ -x "$py" ] || { echo "tfplan: run make venv first" >&2; exit 1; }
export PYTHONPATH=tools
status=0
started=$(date +%s)

run() {
  echo "tfplan: $*"
  "$py" -m tfstandin check "$@" || status=1
}

run terraform/examples/complete --var project_id=acme-prod --var notification_email=oncall@example.com
run terraform --var-file tests/terraform/fixtures/module-minimal.tfvars
run terraform --var-file tests/terraform/fixtures/module-everything.tfvars

echo "tfplan: tests/terraform/fixtures/bad_for_each (known bad: must fail with an unknown for_each key)"
out=$(mktemp)
if "$py" -m tfstandin check tests/terraform/fixtures/bad_for_each >"$out" 2>&1; then
  echo "tfplan: the known-bad configuration planned: the check cannot fail" >&2
  status=1
elif ! grep -q "Invalid for_each argument" "$out"; then
  cat "$out" >&2
  echo "tfplan: the known-bad configuration failed, but not on its for_each key" >&2
  status=1
else
  echo "tfplan: the known-bad configuration fails as it must"
fi
rm -f "$out"

"$py" -m tfdocs readme terraform --check || status=1
"$py" -m tfdocs dashboard --check || status=1

echo "tfplan: done in $(($(date +%s) - started))s"
exit "$status"
