#!/usr/bin/env bash
# A resumed run is exact, checked as a user would: an uninterrupted toy run against one killed
# with SIGKILL a few iterations after its step-25 checkpoint, then resumed.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet
AVDM=target/release/avdm
rm -rf runs/resume-a runs/resume-b
$AVDM distill --steps 30 --eval-clips 0 --out runs/resume-a 2>/dev/null
$AVDM distill --steps 30 --eval-clips 0 --out runs/resume-b 2>/dev/null &
pid=$!
until grep -q '"step": 25' runs/resume-b/checkpoint/state.json 2>/dev/null; do sleep 0.2; done
sleep 3
kill -9 $pid || true
wait $pid || true
echo "killed at: $(wc -l < runs/resume-b/metrics.jsonl) metrics lines; checkpoint step $(grep '"step"' runs/resume-b/checkpoint/state.json)"
$AVDM distill --out runs/resume-b --resume 2>/dev/null
cmp runs/resume-a/metrics.jsonl runs/resume-b/metrics.jsonl && echo "metrics.jsonl identical ($(wc -l < runs/resume-a/metrics.jsonl) lines)"
cmp runs/resume-a/student/unet/diffusion_pytorch_model.safetensors runs/resume-b/student/unet/diffusion_pytorch_model.safetensors && echo "exported students identical"
