#!/usr/bin/env bash
# Load time and peak memory of a full-size AnimateDiff pipeline (SD1.5 folder + motion adapter):
# avdm (`avdm bench --load`) against diffusers (`load_diffusers.py`) on the same folders, for fp16
# and fp32 files (tools/fixtures/make_full_size.py DIR fp16|fp32), each a fresh process, the
# median of REPEAT runs after one warm-up (the page cache warm, as for a second load). Writes a
# Markdown table to stdout.
#
#   tools/bench/load.sh PYTHON FP16_DIR FP32_DIR
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${1:?usage: tools/bench/load.sh PYTHON FP16_DIR FP32_DIR}
REPEAT=${REPEAT:-3}
AVDM=${AVDM:-target/release/avdm}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| files | loaded as | avdm s | avdm peak RSS (x weights) | diffusers s | diffusers peak RSS | diffusers / avdm |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for files in fp16:"$2" fp32:"$3"; do
    name=${files%%:*} dir=${files#*:}
    for dtype in f32 bf16; do
        [ "$name" = fp32 ] && [ "$dtype" = bf16 ] && continue
        ours=() theirs=() ours_peak="" theirs_peak="" weights=""
        for run in $(seq 0 "$REPEAT"); do
            "$AVDM" bench --load "$dir/sd15" --motion-adapter "$dir/motion_adapter" --dtype "$dtype" --out "$TMP/load.json" > /dev/null
            json=$(cat "$TMP/load.json")
            line=$("$PYTHON" tools/bench/load_diffusers.py "$dir/sd15" "$dir/motion_adapter" --dtype "$dtype" 2>/dev/null | tail -1)
            [ "$run" = 0 ] && continue
            ours+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['seconds'])" "$json")")
            theirs+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['seconds'])" "$line")")
            ours_peak=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(f\"{d['peak_rss_mib']:.0f} MiB ({d['peak_rss_mib'] / d['weights_mib']:.2f}x)\")" "$json")
            theirs_peak=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['peak_rss_mib']:.0f} MiB\")" "$line")
        done
        a=$(printf '%s\n' "${ours[@]}" | median) b=$(printf '%s\n' "${theirs[@]}" | median)
        echo "| $name | $dtype | $(printf %.2f "$a") | $ours_peak | $(printf %.2f "$b") | $theirs_peak | $(python3 -c "print(f'{$b / $a:.2f}x')") |"
    done
done
