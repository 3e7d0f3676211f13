#!/usr/bin/env bash
# Side-by-side performance comparison of comfyui-agent and the bare-rmcp reference server
# (benches/bare_rmcp.rs), measured with ../shared/tools/mcpbench.py in one run.
#
# Targets (from the issue): cold start (spawn -> initialize result) within 1.5x of bare rmcp;
# a small tools/call over stdio within 1.2x of bare rmcp in p50 latency and server CPU;
# HTTP calls/s at least 0.9x of bare rmcp; idle peak RSS under 15 MB.
#
# Usage: benches/compare.sh            (builds both release binaries, then measures)
#   RUNS=3          rounds; each round measures both servers, alternating who goes first
#   N=5000 WARMUP=200   measured / warm-up calls per tools/call phase
#   COLD=5          cold starts per server per round (idle stdio spawns)
#   CONC="1 4 8"    HTTP concurrency levels
#   WAIT_IDLE=10    seconds mcpbench may wait for the machine to be <25% busy before a phase
#   SKIP_BUILD=1    reuse the binaries of the last build (paths cached in target/mcpbench/)
#   OURS_BIN=... BARE_BIN=...   explicit binaries (implies SKIP_BUILD)
#   RESULTS=DIR     where the JSON goes (default target/mcpbench/<timestamp>)
#   INSNS=1         also count instructions per call under valgrind's callgrind (default:
#                   on when valgrind is installed); INSNS_LO=100 INSNS_HI=500 calls
# Medians over rounds are reported. Everything binds to 127.0.0.1; every loop is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
MCPBENCH="${MCPBENCH:-$ROOT/../shared/tools/mcpbench.py}"
RUNS="${RUNS:-3}"
N="${N:-5000}"
WARMUP="${WARMUP:-200}"
COLD="${COLD:-5}"
CONC="${CONC:-1 4 8}"
WAIT_IDLE="${WAIT_IDLE:-10}"
TOOL=identify_model_family
ARGS='{"model_name":"sdxl_base.safetensors"}'
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
CACHE="$TARGET_DIR/mcpbench/binaries.env"

[ -f "$MCPBENCH" ] || { echo "compare.sh: mcpbench not found at $MCPBENCH" >&2; exit 2; }

# ---------------------------------------------------------------------------- build
# The executable path of one artifact from `cargo build --message-format=json`.
artifact() { # $1 = target name, $2 = target kind (bin|bench)
    python3 -c '
import json, sys
name, kind = sys.argv[1], sys.argv[2]
path = None
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and t.get("name") == name \
            and kind in t.get("kind", []) and m.get("executable"):
        path = m["executable"]
if not path:
    sys.exit("compare.sh: cargo reported no executable for %s %s" % (kind, name))
print(path)' "$1" "$2"
}

if [ -n "${OURS_BIN:-}" ] && [ -n "${BARE_BIN:-}" ]; then
    :
elif [ "${SKIP_BUILD:-0}" = 1 ] && [ -f "$CACHE" ]; then
    # shellcheck disable=SC1090
    . "$CACHE"
else
    echo "== building release binaries (fat LTO; this takes a while)" >&2
    OURS_BIN="$(cargo build --release --bin comfyui-agent --message-format=json-render-diagnostics \
        | artifact comfyui-agent bin)"
    BARE_BIN="$(cargo build --release --bench bare-rmcp --message-format=json-render-diagnostics \
        | artifact bare-rmcp bench)"
    mkdir -p "$(dirname "$CACHE")"
    printf 'OURS_BIN=%q\nBARE_BIN=%q\n' "$OURS_BIN" "$BARE_BIN" >"$CACHE"
fi
for b in "$OURS_BIN" "$BARE_BIN"; do
    [ -x "$b" ] || { echo "compare.sh: not an executable: $b" >&2; exit 2; }
done

# ---------------------------------------------------------------------------- setup
RESULTS="${RESULTS:-$TARGET_DIR/mcpbench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$RESULTS"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/compare-mcp.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/data" "$WORK/cwd" "$WORK/bin" # an empty cwd: no stray .env is read
# Private copies: a concurrent `cargo build` in a shared target dir must not swap a binary
# halfway through the measurements.
cp "$OURS_BIN" "$WORK/bin/comfyui-agent"
cp "$BARE_BIN" "$WORK/bin/bare-rmcp"
OURS_BIN="$WORK/bin/comfyui-agent"
BARE_BIN="$WORK/bin/bare-rmcp"
{
    echo "git_head=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "git_dirty=$(git status --porcelain 2>/dev/null | grep -c . || true)"
    echo "ours_sha256=$(sha256sum "$OURS_BIN" | cut -d' ' -f1) ours_bytes=$(stat -c %s "$OURS_BIN")"
    echo "bare_sha256=$(sha256sum "$BARE_BIN" | cut -d' ' -f1) bare_bytes=$(stat -c %s "$BARE_BIN")"
} >"$RESULTS/build.txt"
sed 's/^/  /' "$RESULTS/build.txt" >&2
export COMFYUI_AGENT_DATA_DIR="$WORK/data"
unset RUST_LOG # both servers then log at their default, info,rmcp=warn, to stderr

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

stdio_cmd() { # $1 = ours|bare
    if [ "$1" = ours ]; then echo "$OURS_BIN mcp"; else echo "$BARE_BIN stdio"; fi
}
http_cmd() { # $1 = ours|bare, $2 = port
    if [ "$1" = ours ]; then echo "$OURS_BIN serve --bind 127.0.0.1:$2"; else echo "$BARE_BIN http --bind 127.0.0.1:$2"; fi
}

# Runs mcpbench quietly; the JSON summary lands in $RESULTS/$name.json.
bench() { # $1 = file name, rest = mcpbench arguments
    local name="$1"
    shift
    if ! python3 "$MCPBENCH" "$@" --cwd "$WORK/cwd" --env "COMFYUI_AGENT_DATA_DIR=$WORK/data" \
        --json-out "$RESULTS/$name.json" >"$RESULTS/$name.txt" 2>&1; then
        echo "compare.sh: mcpbench failed for $name; see $RESULTS/$name.txt" >&2
        tail -n 20 "$RESULTS/$name.txt" >&2
        exit 1
    fi
    printf '.' >&2
}

measure() { # $1 = ours|bare, $2 = round
    local who="$1" r="$2" i c port
    # Cold start and idle peak RSS: initialize + tools/list only, no tool calls.
    for i in $(seq 1 "$COLD"); do
        # Only the first spawn of a batch waits for a quiet machine (each wait costs >= 1 s).
        bench "stdio-idle-$who-r$r-$i" stdio --cmd "$(stdio_cmd "$who")" --label "$who" --list-n 0 \
            --wait-idle "$([ "$i" = 1 ] && echo "$WAIT_IDLE" || echo 0)"
    done
    # Sequential and pipelined tools/call over stdio (p50, calls/s, server CPU per call).
    bench "stdio-call-$who-r$r" stdio --cmd "$(stdio_cmd "$who")" --label "$who" \
        --tool "$TOOL" --args "$ARGS" --n "$N" --warmup "$WARMUP" --inflight 8 \
        --wait-idle "$WAIT_IDLE"
    # HTTP: idle RSS and cold start, then calls/s at each concurrency level.
    port="$(free_port)"
    bench "http-idle-$who-r$r" http --url "http://127.0.0.1:$port/mcp" \
        --spawn "$(http_cmd "$who" "$port")" --label "$who" --list-n 0
    for c in $CONC; do
        port="$(free_port)"
        bench "http-c$c-$who-r$r" http --url "http://127.0.0.1:$port/mcp" \
            --spawn "$(http_cmd "$who" "$port")" --label "$who" --tool "$TOOL" --args "$ARGS" \
            --n "$N" --warmup "$WARMUP" --concurrency "$c" --wait-idle "$WAIT_IDLE"
    done
}

echo "== measuring: $RUNS round(s), N=$N, HTTP concurrency: $CONC; results in $RESULTS" >&2
for r in $(seq 1 "$RUNS"); do
    # Alternate the order so that drift on a shared machine hits both sides alike.
    if [ $((r % 2)) = 1 ]; then order="ours bare"; else order="bare ours"; fi
    for who in $order; do measure "$who" "$r"; done
    echo " round $r done" >&2
done

# ---------------------------------------------------------------------------- instructions
# Wall-clock and CPU time swing with whatever else runs on a shared machine; instruction
# counts don't. Under callgrind, each server serves INSNS_LO and INSNS_HI calls; the
# difference divided by (HI - LO) is the instructions per call, start-up cancelled out.
INSNS="${INSNS:-$(command -v valgrind >/dev/null && echo 1 || echo 0)}"
INSNS_LO="${INSNS_LO:-100}"
INSNS_HI="${INSNS_HI:-500}"
cg_total() { # the instruction total of a callgrind output file
    awk '/^(summary|totals):/ {print $2; exit}' "$1"
}
insns_stdio() { # $1 = ours|bare, $2 = calls
    local out="$RESULTS/cg-stdio-$1-$2.out"
    bench "insns-stdio-$1-$2" stdio --cmd "valgrind --tool=callgrind --callgrind-out-file=$out $(stdio_cmd "$1")" \
        --label "$1" --tool "$TOOL" --args "$ARGS" --n "$2" --warmup 20 --list-n 0 --start-timeout 120
    cg_total "$out"
}
insns_http() { # $1 = ours|bare, $2 = calls
    local out="$RESULTS/cg-http-$1-$2.out" port pid i
    port="$(free_port)"
    # Started here rather than by mcpbench, to stop it with SIGINT (both servers shut down
    # gracefully on it, so callgrind writes its output).
    (cd "$WORK/cwd" && exec valgrind --tool=callgrind --callgrind-out-file="$out" \
        $(http_cmd "$1" "$port")) 2>"$RESULTS/cg-http-$1-$2.stderr" &
    pid=$!
    # Valgrind starts slowly: wait (at most 60 s) until the port accepts connections.
    for i in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    bench "insns-http-$1-$2" http --url "http://127.0.0.1:$port/mcp" --tool "$TOOL" --args "$ARGS" \
        --n "$2" --warmup 20 --list-n 0 --start-timeout 120
    kill -INT "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cg_total "$out"
}
if [ "$INSNS" = 1 ]; then
    echo "== instruction counts under callgrind ($INSNS_LO and $INSNS_HI calls per server)" >&2
    {
        for who in ours bare; do
            lo="$(insns_stdio "$who" "$INSNS_LO")"; hi="$(insns_stdio "$who" "$INSNS_HI")"
            echo "stdio $who $lo $hi"
            lo="$(insns_http "$who" "$INSNS_LO")"; hi="$(insns_http "$who" "$INSNS_HI")"
            echo "http $who $lo $hi"
        done
    } >"$RESULTS/insns.txt"
    echo >&2
fi

# ---------------------------------------------------------------------------- report
python3 - "$RESULTS" "$CONC" "$INSNS_LO" "$INSNS_HI" <<'PY'
import glob, json, os, statistics, sys

results, conc = sys.argv[1], [int(c) for c in sys.argv[2].split()]

def load(pattern):
    out = []
    for path in sorted(glob.glob(os.path.join(results, pattern))):
        with open(path) as f:
            out.append(json.load(f))
    return out

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def get(d, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d

rows, summary = [], {"results_dir": results, "metrics": {}}

def row(name, key, ours, bare, target=None, better="lower", unit=""):
    ratio = ours / bare if ours is not None and bare not in (None, 0) else None
    verdict = ""
    if target is not None and ratio is not None:
        ok = ratio <= target if better == "lower" else ratio >= target
        verdict = ("PASS" if ok else "FAIL") + (f" (<= {target}x)" if better == "lower" else f" (>= {target}x)")
    rows.append((name, ours, bare, ratio, verdict, unit))
    summary["metrics"][key] = {"ours": ours, "bare": bare, "ratio": ratio, "target": target,
                               "better": better, "unit": unit, "verdict": verdict or None}

side = {}
for who in ("ours", "bare"):
    idle = load(f"stdio-idle-{who}-r*.json")
    call = load(f"stdio-call-{who}-r*.json")
    hidle = load(f"http-idle-{who}-r*.json")
    side[who] = {
        "cold": med([s.get("cold_start_ms") for s in idle]),
        "cold_http": med([s.get("cold_start_ms") for s in hidle]),
        "rss_idle": max([get(s, "rss", "vmhwm_mb") or 0 for s in idle] or [None]),
        "rss_idle_http": max([get(s, "rss", "vmhwm_mb") or 0 for s in hidle] or [None]),
        "rss_after_calls": max([get(s, "rss", "vmhwm_mb") or 0 for s in call] or [None]),
        "p50": med([get(s, "call", "p50_us") for s in call]),
        "p99": med([get(s, "call", "p99_us") for s in call]),
        "cps": med([get(s, "call", "calls_per_s") for s in call]),
        "cpu": med([get(s, "call", "server_cpu_us_per_call") for s in call]),
        "pipe_cps": med([get(s, "pipelined", "calls_per_s") for s in call]),
        "pipe_cpu": med([get(s, "pipelined", "server_cpu_us_per_call") for s in call]),
        "resp_bytes": med([get(s, "call", "response_bytes") for s in call]),
    }
    for c in conc:
        runs = load(f"http-c{c}-{who}-r*.json")
        side[who][f"http{c}"] = med([get(s, "call", "calls_per_s") for s in runs])
        side[who][f"http{c}_p50"] = med([get(s, "call", "p50_us") for s in runs])
        side[who][f"http{c}_cpu"] = med([get(s, "call", "server_cpu_us_per_call") for s in runs])
        side[who][f"http{c}_rss"] = max([get(s, "rss", "vmhwm_mb") or 0 for s in runs] or [None])
    errors = [s.get("error") for s in load(f"*-{who}-r*.json") if s.get("error")]
    if errors:
        side[who]["errors"] = errors

o, b = side["ours"], side["bare"]
row("cold start stdio (ms)", "cold_start_stdio_ms", o["cold"], b["cold"], 1.5)
row("cold start http (ms)", "cold_start_http_ms", o["cold_http"], b["cold_http"])
row("stdio tools/call p50 (us)", "stdio_p50_us", o["p50"], b["p50"], 1.2)
row("stdio tools/call p99 (us)", "stdio_p99_us", o["p99"], b["p99"])
row("stdio server CPU/call (us)", "stdio_server_cpu_us", o["cpu"], b["cpu"], 1.2)
row("stdio calls/s sequential", "stdio_calls_per_s", o["cps"], b["cps"], better="higher")
row("stdio calls/s pipelined x8", "stdio_pipelined_calls_per_s", o["pipe_cps"], b["pipe_cps"], better="higher")
row("stdio pipelined CPU/call (us)", "stdio_pipelined_cpu_us", o["pipe_cpu"], b["pipe_cpu"])
row("stdio response bytes", "stdio_response_bytes", o["resp_bytes"], b["resp_bytes"])
for c in conc:
    row(f"http calls/s c={c}", f"http_c{c}_calls_per_s", o[f"http{c}"], b[f"http{c}"], 0.9, "higher")
    row(f"http p50 c={c} (us)", f"http_c{c}_p50_us", o[f"http{c}_p50"], b[f"http{c}_p50"])
    row(f"http server CPU/call c={c} (us)", f"http_c{c}_server_cpu_us", o[f"http{c}_cpu"], b[f"http{c}_cpu"])
row("idle peak RSS stdio (MB)", "idle_rss_stdio_mb", o["rss_idle"], b["rss_idle"])
row("idle peak RSS http (MB)", "idle_rss_http_mb", o["rss_idle_http"], b["rss_idle_http"])
row("peak RSS after stdio calls (MB)", "rss_after_calls_mb", o["rss_after_calls"], b["rss_after_calls"])
for c in conc:
    row(f"peak RSS after http c={c} (MB)", f"http_c{c}_rss_mb", o[f"http{c}_rss"], b[f"http{c}_rss"])
insns_path = os.path.join(results, "insns.txt")
if os.path.exists(insns_path):
    lo_n, hi_n = int(sys.argv[3]), int(sys.argv[4])
    per = {}
    with open(insns_path) as fh:
        for line in fh:
            mode, who, lo, hi = line.split()
            per[(mode, who)] = (int(hi) - int(lo)) / (hi_n - lo_n) / 1000.0
    for mode in ("stdio", "http"):
        row(f"{mode} instructions/call (k, callgrind)", f"{mode}_kinsns_per_call",
            per.get((mode, "ours")), per.get((mode, "bare")))
idle_max = max(v for v in (o["rss_idle"], o["rss_idle_http"]) if v is not None)
summary["metrics"]["idle_rss_target"] = {"ours_max_mb": idle_max, "limit_mb": 15,
                                         "verdict": "PASS" if idle_max < 15 else "FAIL"}
summary["sides"] = side
try:
    with open(os.path.join(results, "build.txt")) as fh:
        summary["build"] = dict(kv.split("=", 1) for line in fh for kv in line.split())
except OSError:
    pass

def f(v):
    if v is None:
        return "-"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"

w = max(len(r[0]) for r in rows)
print(f"{'metric':<{w}}  {'ours':>10}  {'bare':>10}  {'ratio':>6}  target")
for name, ours, bare, ratio, verdict, _ in rows:
    print(f"{name:<{w}}  {f(ours):>10}  {f(bare):>10}  {(f'{ratio:.2f}x' if ratio else '-'):>6}  {verdict}")
print(f"{'idle peak RSS < 15 MB (ours)':<{w}}  {f(idle_max):>10}  {'':>10}  {'':>6}  "
      f"{summary['metrics']['idle_rss_target']['verdict']}")
for who in ("ours", "bare"):
    for e in side[who].get("errors", []):
        print(f"error ({who}): {e}")
with open(os.path.join(results, "summary.json"), "w") as fh:
    json.dump(summary, fh, indent=2)
print(f"\nJSON: {os.path.join(results, 'summary.json')} (medians of rounds; RSS is the max)")
PY
