#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, real MCP clients
# (Python and TypeScript SDKs), the web console in headless Chromium, the official conformance
# suite, offline checks of the CI, container and pre-commit files, and a short fuzzing smoke.
# Installs the npm and pip packages it needs into .cache/ on first use, Debian's chromium with
# apt-get when missing (as root), and cargo-fuzz into ~/.cache/comfyui-agent/bin.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    formatting, lints and the Rust tests only
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
[[ "${1:-}" == "--quick" ]] && quick=true

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests (unit + integration)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
cargo test --locked --doc

if $quick; then
  exit 0
fi

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export COMFYUI_AGENT_BIN="$target_dir/debug/comfyui-agent"

step "Python and TypeScript SDK clients against the binary"
bash tests/interop/run.sh

step "Web console and CORS in headless Chromium (Playwright)"
bash tests/browser/run.sh

step "Official MCP conformance suite"
bash tests/conformance/run.sh

step "Shipping files: workflows, zizmor, compose, hadolint, pre-commit"
bash scripts/ship-checks.sh

step "Fuzzing smoke (${FUZZ_SECONDS:-20}s per target)"
bash scripts/fuzz-smoke.sh
