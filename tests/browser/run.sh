#!/usr/bin/env bash
# Browser tests: the web console and CORS in headless Chromium, driven by playwright-core
# (pinned in package.json / package-lock.json), against the product binary on loopback.
#
#   tests/browser/run.sh
#
# Environment:
#   COMFYUI_AGENT_BIN  the binary under test (default: $CARGO_TARGET_DIR/debug/comfyui-agent,
#                      CARGO_TARGET_DIR defaulting to target/; built with `cargo build` when
#                      missing; an explicit path must exist)
#   BROWSER_CACHE      where node_modules lives (default: .cache/browser in the repo); rebuilt
#                      only when package.json or package-lock.json change
#   CHROMIUM           the browser to drive (default: /usr/bin/chromium, Debian's `chromium`;
#                      installed with apt-get when missing and running as root). Playwright's
#                      own browser download is never used.
#   BROWSER_RUST_LOG   RUST_LOG for the server under test (default: warn)
#
# Needs: node 20+ and npm, and the npm registry on first run.
# The console's screenshot is saved to tests/browser/artifacts/console.png (gitignored).
# Last line: `browser: N passed, M failed`. Exit status: non-zero when any test failed.

set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${BROWSER_CACHE:-$repo/.cache/browser}"
chromium="${CHROMIUM:-/usr/bin/chromium}"

log() { printf 'browser: %s\n' "$*" >&2; }
die() { log "error: $*"; echo "browser: 0 passed, 1 failed"; exit 2; }

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- the binary under test ---------------------------------------------------------------

if [ -n "${COMFYUI_AGENT_BIN:-}" ]; then
    [ -x "$COMFYUI_AGENT_BIN" ] || die "COMFYUI_AGENT_BIN=$COMFYUI_AGENT_BIN is not an executable file"
    bin="$COMFYUI_AGENT_BIN"
else
    target_dir="${CARGO_TARGET_DIR:-target}"
    case "$target_dir" in /*) ;; *) target_dir="$repo/$target_dir" ;; esac
    bin="$target_dir/debug/comfyui-agent"
    if [ ! -x "$bin" ]; then
        log "building $bin (cargo build)"
        (cd "$repo" && cargo build --bin comfyui-agent) || die "cargo build failed"
    fi
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
export COMFYUI_AGENT_BIN="$bin"
log "binary: $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"

# --- Chromium ------------------------------------------------------------------------------

if [ ! -x "$chromium" ]; then
    if [ "$chromium" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing Debian's chromium package (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >&2 \
            || die "apt-get install chromium failed"
    else
        die "$chromium not found: install Debian's chromium package (apt-get install chromium), or set CHROMIUM"
    fi
fi
export CHROMIUM="$chromium"
log "browser: $("$chromium" --version 2>/dev/null || echo "$chromium")"

# --- playwright-core, installed once per pinned manifest -------------------------------------

command -v node >/dev/null || die "node not found"
command -v npm >/dev/null || die "npm not found"
node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
    || die "node $(node --version) is older than 20"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
stamp="$( (hash_of "$here/package.json" "$here/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$cache/.browser-stamp" 2>/dev/null)" != "$stamp" ] || [ ! -d "$cache/node_modules" ]; then
    log "installing playwright-core into $cache (npm ci)"
    rm -rf "$cache/node_modules"
    cp "$here/package.json" "$here/package-lock.json" "$cache/"
    (cd "$cache" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) \
        || die "npm ci failed"
    echo "$stamp" >"$cache/.browser-stamp"
else
    log "playwright-core up to date ($cache)"
fi
# The tests import playwright-core by name, so node_modules must sit beside them: a symlink
# (gitignored) into the cache.
link="$here/node_modules"
if [ -e "$link" ] && [ ! -L "$link" ]; then
    rm -rf "$link"
fi
ln -sfn "$cache/node_modules" "$link"
exec 9>&-

# --- run -----------------------------------------------------------------------------------

results="$(mktemp -d "${TMPDIR:-/tmp}/browser-results.XXXXXX")"
trap 'rm -rf "$results"' EXIT
rm -rf "$here/artifacts"

rc=0
(cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout -k 10 300 node --test --test-timeout=60000 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$results/browser.tap" \
    ./*.test.mjs) || rc=$?
field() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$results/browser.tap" 2>/dev/null | tail -1; }
p="$(field pass)"; p="${p:-0}"
f="$(field fail)"; f="${f:-0}"
c="$(field cancelled)"; c="${c:-0}"
f=$((f + c))
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; log "node --test exited with $rc"; fi
if [ $((p + f)) -eq 0 ]; then f=1; log "node --test ran no test"; fi
if [ -f "$here/artifacts/console.png" ]; then
    log "screenshot: $here/artifacts/console.png"
fi
echo "browser: $p passed, $f failed"
[ "$f" -eq 0 ]
