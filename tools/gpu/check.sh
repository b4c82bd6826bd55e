#!/usr/bin/env bash
# The prepared GPU check: one run on a lent GPU machine (no Rust, no network; the repository,
# the `avdm` binary of tools/gpu/build.sh and the machine's own PyTorch), writing one Markdown
# table to OUTDIR/check.md. Without a GPU, `--device cpu` runs the same steps at tiny sizes
# (a test runs that mode), so the script is known to work before a GPU is lent.
#
#   tools/gpu/check.sh OUTDIR                 # CUDA: target/gpu/avdm-cuda (unpacked from .xz)
#   tools/gpu/check.sh --device cpu OUTDIR    # CPU, tiny sizes: target/release/avdm
#   AVDM=path/to/avdm tools/gpu/check.sh ...  # another binary
#
# Rows: (1) the tiny UNet against diffusers' outputs on the device (and on Vulkan when
# the binary has wgpu: tools/gpu/build.sh --wgpu); (2) UNetMotionModel forward and forward + backward (chunked and
# Burn attention) in f32 and bf16, with PyTorch's times on the same shapes when torch and
# diffusers import (tools/bench/bench_diffusers.py), as ratios; (3) one AVDM2 iteration, time and
# peak memory; (4) text to video end to end: the toy teacher's 25-step CFG against the 4-step
# student, and a 4-step 16x512x512 generation with the VAE decode at full size (random weights);
# (5) a few toy distillation iterations on the device against the same on the CPU (loss by loss);
# (6) the multi-process path alone (NCCL on a GPU, TCP on the CPU) against (5).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=cuda
if [ "${1:-}" = "--device" ]; then
    DEVICE=$2
    shift 2
fi
OUT=${1:?usage: tools/gpu/check.sh [--device cuda|cpu] OUTDIR}
mkdir -p "$OUT"
if [ "$DEVICE" = cpu ]; then
    AVDM=${AVDM:-target/release/avdm}
    SIZE=tiny FRAMES=2 SIDE=16 SIDE_FLAG=--tiny-side REPEAT=1 STEPS=2
else
    if [ -z "${AVDM:-}" ] && [ ! -x target/gpu/avdm-cuda ] && [ -f target/gpu/avdm-cuda.xz ]; then
        xz -dk target/gpu/avdm-cuda.xz
        chmod +x target/gpu/avdm-cuda
    fi
    AVDM=${AVDM:-target/gpu/avdm-cuda}
    SIZE=full FRAMES=16 SIDE=64 SIDE_FLAG=--full-side REPEAT=3 STEPS=3
fi
[ -x "$AVDM" ] || { echo "no avdm binary at $AVDM (tools/gpu/build.sh builds it)" >&2; exit 1; }
TABLE="$OUT/check.md"
LOG="$OUT/check.log"
: > "$LOG"
{
    echo "GPU check: \`$("$AVDM" --version)\`, device \`$DEVICE\`, $(date -u +%Y-%m-%d)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/GPU: /'
    echo
    echo "| check | result | command |"
    echo "| --- | --- | --- |"
} > "$TABLE"
row() { echo "| $1 | $2 | \`$3\` |" >> "$TABLE"; }
# Runs a command, logging it; on failure the row says so and the check goes on.
attempt() {
    echo "\$ $*" >> "$LOG"
    "$@" >> "$LOG" 2>&1
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

# (1) Parity on the device.
# Vulkan when the binary has wgpu too (tools/gpu/build.sh --wgpu builds both into one).
VULKAN=""
[ "$DEVICE" != cpu ] && "$AVDM" --version | grep -q wgpu && VULKAN=vulkan
for dev in "$DEVICE" $VULKAN; do
    bin=$AVDM
    cmd=("$bin" bench --size tiny --frames 2 --tiny-side 16 --repeat 1 --parity tests/fixtures/tiny_unet --device "$dev" --out "$OUT/parity-$dev.json")
    if attempt "${cmd[@]}"; then
        row "tiny UNet vs diffusers on $dev (tolerance 1e-4)" "max error $(json "$OUT/parity-$dev.json" "'%.1e' % d['parity_max_error']")" "${cmd[*]}"
    else
        row "tiny UNet vs diffusers on $dev" "FAILED (see check.log)" "${cmd[*]}"
    fi
done

# (2) The UNet forward and forward + backward, ours and PyTorch's.
TORCH=0
python3 -c "import torch, diffusers" 2>/dev/null && TORCH=1
for dtype in f32 bf16; do
    cmd=("$AVDM" bench --size "$SIZE" --frames "$FRAMES" "$SIDE_FLAG" "$SIDE" --backward --attention chunked,burn --repeat "$REPEAT" --dtype "$dtype" --device "$DEVICE" --out "$OUT/unet-$dtype.json")
    if ! attempt "${cmd[@]}"; then
        row "$SIZE UNet, $dtype" "FAILED (see check.log)" "${cmd[*]}"
        continue
    fi
    torch_file="$OUT/torch-$dtype.jsonl"
    torch_cmd=(python3 tools/bench/bench_diffusers.py --size "$SIZE" --frames "$FRAMES" --side "$SIDE" --backward --repeat "$REPEAT" --device "$DEVICE" --dtype "$dtype")
    if [ "$TORCH" = 1 ] && { echo "\$ ${torch_cmd[*]}" >> "$LOG"; "${torch_cmd[@]}" > "$torch_file" 2>> "$LOG"; }; then :; else rm -f "$torch_file"; fi
    python3 - "$OUT/unet-$dtype.json" "$torch_file" "$dtype" "${cmd[*]}" >> "$TABLE" <<'PY'
import json, os, sys
ours = json.load(open(sys.argv[1]))["timings"]
theirs = []
if os.path.exists(sys.argv[2]):
    theirs = [json.loads(l) for l in open(sys.argv[2]) if l.strip().startswith("{")]
def torch_time(what):
    backward = "backward" in what
    for t in theirs:
        if ("backward" in t.get("what", "")) == backward:
            return t.get("median_s")
for t in ours:
    mem = t["memory"].get("device_reserved_mib") or t["memory"].get("host_peak_rss_mib")
    result = f"{t['median_s']:.3f} s, peak {mem:.0f} MiB"
    other = torch_time(t["what"])
    if other:
        result += f"; PyTorch {other:.3f} s: {t['median_s'] / other:.2f}x"
    elif not theirs:
        result += "; PyTorch: not measured (torch + diffusers not importable)"
    print(f"| {t['what']}, {sys.argv[3]}, {t['shape']} | {result} | `{sys.argv[4]}` |")
PY
done

# (3) One AVDM2 iteration; (4) text to video end to end: the toy teacher against the 4-step
# student, and the 4-step student with the VAE decode at full size (on the CPU at 1 frame of 8x8
# latents, so that the full-size pipeline's code runs).
DTYPE_STEP=bf16
[ "$DEVICE" = cpu ] && DTYPE_STEP=f32
if [ "$DEVICE" = cpu ]; then FULL_CLIP=(--frames 1 --full-side 8); else FULL_CLIP=(--frames 16 --full-side 64); fi
steps=(
    "step" "$AVDM bench --size $SIZE --frames $FRAMES $SIDE_FLAG $SIDE --distill-step --repeat $REPEAT --dtype $DTYPE_STEP --device $DEVICE"
    "generation" "$AVDM bench --size tiny,full ${FULL_CLIP[*]} --end-to-end --repeat $REPEAT --dtype $DTYPE_STEP --device $DEVICE"
)
for ((i = 0; i < ${#steps[@]}; i += 2)); do
    name=${steps[i]} cmd=${steps[i + 1]}
    # shellcheck disable=SC2086 # the command is one line of words without spaces in them
    if attempt $cmd --out "$OUT/$name.json"; then
        python3 - "$OUT/$name.json" "$cmd" >> "$TABLE" <<'PY'
import json, sys
for t in json.load(open(sys.argv[1]))["timings"]:
    if "UNetMotionModel" in t["what"]:
        continue
    mem = t["memory"].get("device_reserved_mib") or t["memory"].get("host_peak_rss_mib")
    print(f"| {t['what']}, {t['shape']} | {t['median_s']:.3f} s, peak {mem:.0f} MiB | `{sys.argv[2]}` |")
PY
    else
        row "$name" "FAILED (see check.log)" "$cmd"
    fi
done

# (5) Toy distillation iterations on the device against the CPU; (6) the multi-process path
# alone on the device (NCCL on a GPU, the TCP collective on the CPU: every gradient through the
# collective's buckets) against (5)'s run on the device.
COLLECTIVE=nccl
[ "$DEVICE" = cpu ] && COLLECTIVE=tcp
# NCCL as PyTorch's wheel ships it (libnccl.so.2 under site-packages/nvidia/nccl/lib), unless
# the system has it.
NCCL_DIR=$(python3 -c "import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], 'lib'))" 2>/dev/null || true)
[ -n "$NCCL_DIR" ] && export LD_LIBRARY_PATH="$NCCL_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

TOY=(distill --steps "$STEPS" --eval-clips 0 --threads 1)
# The relative difference of two toy runs' losses and gradient norms, loss by loss.
compare() {
    python3 - "$1/metrics.jsonl" "$2/metrics.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
keys = ["loss_adm", "loss_sdm", "loss_fake", "loss_disc", "grad_norm_student"]
worst = max(abs(x[k] - y[k]) / max(abs(y[k]), 1e-12) for x, y in zip(a, b) for k in keys if x.get(k) is not None)
print(f"{len(a)} iterations; largest relative difference of the losses and the student's gradient norm: {worst:.1e}")
PY
}
runs=(
    "toy-$DEVICE" "--device $DEVICE"
    "toy-cpu" "--device cpu"
    "toy-$COLLECTIVE" "--device $DEVICE --collective $COLLECTIVE"
)
ok=()
for ((i = 0; i < ${#runs[@]}; i += 2)); do
    rm -rf "${OUT:?}/${runs[i]}"
    # shellcheck disable=SC2086 # the flags are words without spaces
    if attempt "$AVDM" "${TOY[@]}" ${runs[i + 1]} --out "$OUT/${runs[i]}"; then ok+=(1); else ok+=(0); fi
done
checks=(
    "toy distillation on $DEVICE against the CPU" "${ok[0]}${ok[1]}" "toy-$DEVICE" "toy-cpu" "$AVDM ${TOY[*]} --device $DEVICE"
    "toy distillation through the $COLLECTIVE collective (one rank) against (5) on $DEVICE" "${ok[2]}${ok[0]}" "toy-$COLLECTIVE" "toy-$DEVICE" "$AVDM ${TOY[*]} --device $DEVICE --collective $COLLECTIVE"
)
for ((i = 0; i < ${#checks[@]}; i += 5)); do
    if [ "${checks[i + 1]}" = 11 ]; then
        row "${checks[i]}" "$(compare "$OUT/${checks[i + 2]}" "$OUT/${checks[i + 3]}")" "${checks[i + 4]}"
    else
        row "${checks[i]}" "FAILED (see check.log)" "${checks[i + 4]}"
    fi
done
cat "$TABLE"
! grep -q FAILED "$TABLE"
