#!/usr/bin/env bash
# Short fuzzing smoke: builds the cargo-fuzz targets in fuzz/ and runs each for a few seconds
# from a corpus seeded with the test fixtures. Fails on any crash; the failing input is left
# in fuzz/artifacts/<target>/.
#
#   scripts/fuzz-smoke.sh                  every target, FUZZ_SECONDS (default 20) each
#   scripts/fuzz-smoke.sh apply_patch      one target
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them. cargo-fuzz is installed into $FUZZ_CACHE/bin when missing, and the targets build in
# $FUZZ_CACHE/fuzz-target so that the main build folder is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
cache="${FUZZ_CACHE:-$HOME/.cache/comfyui-agent}"
target_dir="${FUZZ_TARGET_DIR:-$cache/fuzz-target}"
# The library forbids unsafe code, so AddressSanitizer adds little but build and run time.
sanitizer="${FUZZ_SANITIZER:-none}"
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(load_workflow ui_to_api apply_patch validate model_header)

export RUSTC_BOOTSTRAP=1
export PATH="$cache/bin/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz into $cache/bin"
  # Without CARGO_TARGET_DIR cargo install builds in a temporary folder, not the main one.
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked --root "$cache/bin"
fi

fuzz() { cargo fuzz "$1" --fuzz-dir fuzz --target-dir "$target_dir" -s "$sanitizer" "${@:2}"; }

if [[ $# -eq 0 ]]; then
  fuzz build
else
  for target in "${targets[@]}"; do fuzz build "$target"; done
fi

# Seeds, rebuilt on every run from the fixtures (a corpus kept from earlier runs grows on
# top of them). apply_patch takes `document NUL patch`, so each workflow gets a few patches.
seed() {
  mkdir -p "fuzz/corpus/$1"
  for file in "${@:2}"; do
    cp "$file" "fuzz/corpus/$1/seed-$(basename "$(dirname "$file")")-$(basename "$file")"
  done
}
api=(tests/fixtures/workflows/*.json tests/fixtures/workflows/ui/*_api.json tests/fixtures/seed-templates/*.json)
ui=(tests/fixtures/workflows/ui/*_ui.json)
seed load_workflow "${api[@]}" "${ui[@]}"
seed validate "${api[@]}"
seed ui_to_api "${ui[@]}"
mkdir -p fuzz/corpus/apply_patch
python3 - fuzz/corpus/apply_patch "${api[@]}" "${ui[@]}" <<'PY'
import json, os, sys
out, files = sys.argv[1], sys.argv[2:]
for n, path in enumerate(files):
    doc = json.load(open(path))
    first = next(iter(doc)) if isinstance(doc, dict) and doc else "x"
    patches = [
        [{"op": "test", "path": f"/{first}", "value": doc.get(first) if isinstance(doc, dict) else None}],
        [{"op": "add", "path": "/99", "value": {"class_type": "Note", "inputs": {}}},
         {"op": "copy", "from": f"/{first}", "path": "/100"},
         {"op": "move", "from": "/100", "path": "/101"}],
        [{"op": "replace", "path": f"/{first}/inputs/seed", "value": 1},
         {"op": "remove", "path": f"/{first}"}],
        [{"op": "add", "path": "/nodes/-", "value": [1, 2]}, {"op": "remove", "path": "/nodes/0"}],
    ]
    for k, patch in enumerate(patches):
        with open(os.path.join(out, f"seed-{n}-{k}"), "wb") as f:
            f.write(json.dumps(doc).encode() + b"\0" + json.dumps(patch).encode())
PY

# Model headers: a small safetensors table and a small GGUF file.
mkdir -p fuzz/corpus/model_header
python3 - fuzz/corpus/model_header <<'PY'
import json, os, struct, sys
out = sys.argv[1]
table = {"__metadata__": {"ss_base_model_version": "sdxl_base_v1-0"},
         "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight":
             {"dtype": "F16", "shape": [8, 2048], "data_offsets": [0, 32768]},
         "model.diffusion_model.double_blocks.0.img_attn.qkv.weight":
             {"dtype": "BF16", "shape": [9216, 3072], "data_offsets": [32768, 32800]}}
body = json.dumps(table).encode()
open(os.path.join(out, "seed-safetensors"), "wb").write(struct.pack("<Q", len(body)) + body)
def s(text):
    return struct.pack("<Q", len(text)) + text.encode()
gguf = b"GGUF" + struct.pack("<IQQ", 3, 1, 2)
gguf += s("general.architecture") + struct.pack("<I", 8) + s("wan")
gguf += s("tokens") + struct.pack("<IIQ", 9, 8, 2) + s("a") + s("b")
gguf += s("blocks.0.self_attn.q.weight") + struct.pack("<IQQIQ", 2, 5120, 5120, 12, 0)
open(os.path.join(out, "seed-gguf"), "wb").write(gguf)
PY

failed=()
for target in "${targets[@]}"; do
  log="$target_dir/fuzz-smoke-$target.log"
  if fuzz run "$target" -- -max_total_time="$seconds" -dict=fuzz/workflow.dict \
      -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz $target: ok, ${runs:-?} runs in ${seconds}s"
  else
    # The panic and how to reproduce it; the full log also dumps the input byte by byte.
    grep -m1 -A4 'panicked at\|ERROR: libFuzzer' "$log" || tail -n 20 "$log"
    for input in "fuzz/artifacts/$target"/*; do
      [[ -e "$input" ]] || continue
      echo "replay: RUSTC_BOOTSTRAP=1 PATH=$cache/bin/bin:\$PATH cargo fuzz run --fuzz-dir fuzz --target-dir $target_dir -s $sanitizer $target $input"
    done
    echo "fuzz $target: FAILED (log $log, input in fuzz/artifacts/$target/)"
    failed+=("$target")
  fi
done
[[ ${#failed[@]} -eq 0 ]]
