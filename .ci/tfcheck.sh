#!/usr/bin/env bash
# Static checks of the Terraform module (no provider download is possible, so no init/validate):
#   1. terraform fmt -check -recursive terraform
#   2. ../shared/tools/tfcheck terraform (provider-schema check), when ../shared is beside the repo
#   3. checkov over terraform/, installed in its own virtual environment under a cache folder so
#      that its pinned dependencies never meet the project's.
# Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
CACHE_ROOT="${REDRIVE_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redrive-tools}"
CHECKOV_VENV="$CACHE_ROOT/checkov-$CHECKOV_VERSION"
status=0

echo "tfcheck: terraform fmt -check -recursive terraform"
if ! terraform fmt -check -recursive -diff terraform; then
  echo "tfcheck: terraform fmt found unformatted files" >&2
  status=1
fi

if [ -x ../shared/tools/tfcheck ] || [ -f ../shared/tools/tfcheck ]; then
  echo "tfcheck: ../shared/tools/tfcheck terraform"
  # tfcheck needs a python-hcl2 that marks blocks; the project's dev requirements pin one.
  py="python3"
  [ -x .venv/bin/python ] && py=".venv/bin/python"
  if ! "$py" ../shared/tools/tfcheck terraform; then
    status=1
  fi
else
  echo "tfcheck: ../shared/tools/tfcheck not found, schema check skipped"
fi

if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
  echo "tfcheck: installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
  rm -rf "$CHECKOV_VENV"
  mkdir -p "$CACHE_ROOT"
  python3 -m venv "$CHECKOV_VENV"
  log="$CACHE_ROOT/checkov-install.log"
  if ! "$CHECKOV_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "checkov==$CHECKOV_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    rm -rf "$CHECKOV_VENV" # no half-installed tool next time
    echo "tfcheck: could not install checkov $CHECKOV_VERSION" >&2
    exit 1
  fi
fi
echo "tfcheck: checkov -d terraform"
# --quiet prints failed checks only; the summary line still says how many passed/failed/skipped.
if ! "$CHECKOV_VENV/bin/checkov" --directory terraform --framework terraform --quiet --compact \
  --skip-download; then
  status=1
fi

exit "$status"
