#!/usr/bin/env bash
# Interop tests: the official Python (mcp 2.3.0) and TypeScript (@modelcontextprotocol/sdk
# 1.32.2) MCP SDKs against the product binary, over stdio, Streamable HTTP and legacy SSE.
#
#   tests/interop/run.sh            # both SDKs
#   tests/interop/run.sh python     # only the Python tests (or: ts)
#
# Environment:
#   COMFYUI_AGENT_BIN  the binary under test (default: $CARGO_TARGET_DIR/debug/comfyui-agent,
#                      CARGO_TARGET_DIR defaulting to target/; built with `cargo build` when
#                      missing; an explicit path must exist)
#   INTEROP_BUILD=1    run `cargo build` first even when the default binary exists (it is
#                      otherwise tested as found, however old)
#   INTEROP_CACHE      where the venv and node_modules live (default: .cache/interop in the repo);
#                      both are rebuilt only when their pinned manifests change
#   INTEROP_PYTHON     the interpreter for the venv (default: python3, 3.10 or newer)
#   INTEROP_RUST_LOG   RUST_LOG for the servers under test (default: warn)
#
# Needs: python3 (3.10+), node 20+ and npm, and the PyPI and npm registries on first run.
# Last line: `interop: N passed, M failed` (", K skipped" is added when some were skipped).
# Exit status: non-zero when any test failed or a runner did not finish.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${INTEROP_CACHE:-$repo/.cache/interop}"
python="${INTEROP_PYTHON:-python3}"

log() { printf 'interop: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

want_python=1
want_ts=1
if [ "$#" -gt 0 ]; then
    want_python=0
    want_ts=0
    for arg in "$@"; do
        case "$arg" in
            python | py) want_python=1 ;;
            ts | node | typescript) want_ts=1 ;;
            *) die "unknown argument '$arg' (expected: python, ts)" ;;
        esac
    done
fi

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- the binary under test ---------------------------------------------------------------

if [ -n "${COMFYUI_AGENT_BIN:-}" ]; then
    [ -x "$COMFYUI_AGENT_BIN" ] || die "COMFYUI_AGENT_BIN=$COMFYUI_AGENT_BIN is not an executable file"
    bin="$COMFYUI_AGENT_BIN"
else
    target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
    bin="$target_dir/debug/comfyui-agent"
    if [ ! -x "$bin" ] || [ "${INTEROP_BUILD:-0}" = 1 ]; then
        log "building $bin (cargo build)"
        (cd "$repo" && cargo build --bin comfyui-agent) || die "cargo build failed"
    fi
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
export COMFYUI_AGENT_BIN="$bin"
log "binary: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"

# --- toolchains, installed once per pinned manifest ----------------------------------------

mkdir -p "$cache"
# One setup at a time per cache (other checkouts or CI jobs may share it).
exec 9>"$cache/.lock"
flock 9

if [ "$want_python" = 1 ]; then
    command -v "$python" >/dev/null || die "$python not found"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "$python is older than 3.10"
    requirements="$here/python/requirements.txt"
    venv="$cache/venv"
    stamp="$(hash_of "$requirements"; "$python" -c 'import sys; print(sys.version, sys.executable)')"
    stamp="$(printf '%s' "$stamp" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$venv/.interop-stamp" 2>/dev/null)" != "$stamp" ]; then
        log "creating the Python venv in $venv"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
            -r "$requirements" || die "pip install failed"
        echo "$stamp" >"$venv/.interop-stamp"
    else
        log "Python venv up to date ($venv)"
    fi
fi

if [ "$want_ts" = 1 ]; then
    command -v node >/dev/null || die "node not found"
    command -v npm >/dev/null || die "npm not found"
    node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
        || die "node $(node --version) is older than 20"
    ts_cache="$cache/ts"
    stamp="$( (hash_of "$here/ts/package.json" "$here/ts/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$ts_cache/.interop-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -d "$ts_cache/node_modules" ]; then
        log "installing the TypeScript SDK into $ts_cache (npm ci)"
        rm -rf "$ts_cache"
        mkdir -p "$ts_cache"
        cp "$here/ts/package.json" "$here/ts/package-lock.json" "$ts_cache/"
        (cd "$ts_cache" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) || die "npm ci failed"
        echo "$stamp" >"$ts_cache/.interop-stamp"
    else
        log "TypeScript SDK up to date ($ts_cache)"
    fi
    # The tests import the SDK by name, so node_modules must sit beside them: a symlink
    # (gitignored) into the cache.
    link="$here/ts/node_modules"
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        log "replacing $link (a plain directory) with a link into the cache"
        rm -rf "$link"
    fi
    ln -sfn "$ts_cache/node_modules" "$link"
fi

exec 9>&-

# --- run ---------------------------------------------------------------------------------

results="$(mktemp -d "${TMPDIR:-/tmp}/interop-results.XXXXXX")"
trap 'rm -rf "$results"' EXIT

total_pass=0
total_fail=0
total_skip=0
summaries=()

tally() { # name pass fail skip
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
    total_skip=$((total_skip + $4))
    summaries+=("$(printf '%-10s %3d passed, %d failed, %d skipped' "$1:" "$2" "$3" "$4")")
}

if [ "$want_python" = 1 ]; then
    log "running the Python SDK tests (pytest)"
    rc=0
    (cd "$here/python" && PYTHONDONTWRITEBYTECODE=1 timeout -k 10 900 \
        "$cache/venv/bin/python" -m pytest --junitxml="$results/python.xml" -o junit_family=xunit2) || rc=$?
    counts="$("$cache/venv/bin/python" - "$results/python.xml" <<'PY' 2>/dev/null || echo "0 0 0"
import sys
import xml.etree.ElementTree as ET

root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
tests = sum(int(s.get("tests", 0)) for s in suites)
failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(tests - failed - skipped, failed, skipped)
PY
)"
    read -r p f s <<<"$counts"
    # A runner that crashed, timed out or collected nothing counts as a failure too.
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; log "pytest exited with $rc"; fi
    if [ $((p + f + s)) -eq 0 ]; then f=1; log "pytest ran no test"; fi
    tally python-sdk "$p" "$f" "$s"
fi

if [ "$want_ts" = 1 ]; then
    log "running the TypeScript SDK tests (node --test)"
    rc=0
    shopt -s nullglob
    ts_tests=("$here"/ts/*.test.mjs)
    shopt -u nullglob
    (cd "$here/ts" && timeout -k 10 900 node --test --test-timeout=60000 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$results/ts.tap" \
        "${ts_tests[@]}") || rc=$?
    field() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$results/ts.tap" 2>/dev/null | tail -1; }
    p="$(field pass)"; p="${p:-0}"
    f="$(field fail)"; f="${f:-0}"
    c="$(field cancelled)"; c="${c:-0}"
    s="$(field skipped)"; s="${s:-0}"
    t="$(field todo)"; t="${t:-0}"
    f=$((f + c))
    s=$((s + t))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; log "node --test exited with $rc"; fi
    if [ $((p + f + s)) -eq 0 ]; then f=1; log "node --test ran no test"; fi
    tally ts-sdk "$p" "$f" "$s"
fi

for line in "${summaries[@]}"; do
    printf '  %s\n' "$line"
done
final="interop: $total_pass passed, $total_fail failed"
if [ "$total_skip" -gt 0 ]; then final="$final, $total_skip skipped"; fi
echo "$final"
[ "$total_fail" -eq 0 ]
