#!/usr/bin/env bash
# Burn (`avdm bench`) against diffusers/PyTorch (`bench_diffusers.py`) on the same CPU, same
# shapes: the UNetMotionModel forward (and forward + backward) at tiny and full size, then the
# toy teacher's 25-step CFG sampling against the 4-step student. Writes the ratios to
# $OUT/ratios.md. Run from the repository root after `cargo build --release`:
#
#   tools/bench/unet_cpu.sh /path/to/venv/bin/python     # torch 2.15.0 + diffusers 0.42.1
#
# FULL_SIDE (latent side of the full-size run, default 32 = 256x256 videos) and FULL_FRAMES
# (default 16) keep the full-size forward within the memory and patience of a small machine.
set -euo pipefail
PY=${1:-python3}
AVDM=${AVDM:-target/release/avdm}
OUT=${OUT:-runs/bench}
FULL_SIDE=${FULL_SIDE:-32}
FULL_FRAMES=${FULL_FRAMES:-16}
REPEAT=${REPEAT:-3}
mkdir -p "$OUT"

"$AVDM" bench --size tiny --frames 16 --tiny-side 32 --repeat "$REPEAT" --backward --end-to-end --out "$OUT/burn_tiny.json"
"$PY" tools/bench/bench_diffusers.py --size tiny --frames 16 --side 32 --repeat "$REPEAT" --backward > "$OUT/torch_tiny.jsonl"
"$AVDM" bench --size full --frames "$FULL_FRAMES" --full-side "$FULL_SIDE" --repeat "$REPEAT" --out "$OUT/burn_full.json"
"$PY" tools/bench/bench_diffusers.py --size full --frames "$FULL_FRAMES" --side "$FULL_SIDE" --repeat "$REPEAT" > "$OUT/torch_full.jsonl"

python3 - "$OUT" <<'PYEOF'
import json, sys
out = sys.argv[1]
burn = [t for f in ("burn_tiny.json", "burn_full.json") for t in json.load(open(f"{out}/{f}"))["timings"]]
torch = [json.loads(l) for f in ("torch_tiny.jsonl", "torch_full.jsonl") for l in open(f"{out}/{f}")]
rows = ["| what | shape | Burn (flex) s | PyTorch s | Burn / PyTorch |", "|---|---|---|---|---|"]
for b in burn:
    # Names without their "(...)" details: "(Chunked attention)" on Burn's side, "(diffusers, ...)" on torch's.
    name = lambda what: what.split(" (")[0].lower()
    match = [t for t in torch if t["shape"] == b["shape"] and name(t["what"]) == name(b["what"])]
    if match:
        t = match[0]
        rows.append(f"| {b['what']} | {b['shape']} | {b['median_s']:.3f} | {t['median_s']:.3f} | {b['median_s'] / t['median_s']:.2f} |")
    else:
        rows.append(f"| {b['what']} | {b['shape']} | {b['median_s']:.3f} | | |")
e2e = [b for b in burn if "toy" in b["what"]]
if len(e2e) == 2:
    rows.append(f"\nteacher (DDIM 25, CFG) / student (4 steps) end to end: {e2e[0]['median_s'] / e2e[1]['median_s']:.2f}x")
open(f"{out}/ratios.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
PYEOF
