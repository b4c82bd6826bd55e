#!/usr/bin/env bash
# The paper's Table 1 and Fig. 4 in miniature on the toy world: the teacher at 50, 25 and 4
# DDIM steps with CFG, the teacher on the 4-step student sampler, and 4-step students distilled
# with the method and its ablations, each row measured by `avdm eval` on the same clips. Prints
# the combined Markdown table and writes it to $OUT/table1.md; writes $OUT/fig4.png: for each
# row, top to bottom, the 8 frames of two eval clips.
#
#   tools/bench/toy_table1.sh [clips] [out]      (defaults: 128 clips, runs/table1)
#
# Each distillation is `avdm distill --losses <kind>` (the toy preset); nothing else changes
# between rows. Run it on an otherwise idle machine: the table has seconds per clip. Finished
# parts (the teacher's eval, each distilled student) are kept when the script is run again.
# Needs ffmpeg (for the figure).
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIPS=${1:-128}
OUT=${2:-runs/table1}
AVDM=target/release/avdm
cargo build --release --quiet
mkdir -p "$OUT"

if [ ! -f "$OUT/teacher/eval.md" ]; then
    "$AVDM" eval --steps 50,25,4 --guidance 3 --clips "$CLIPS" --out "$OUT/teacher"
fi
# The students' starting point: the teacher itself on the 4-step student sampler, no CFG.
"$AVDM" eval --sampler student --clips "$CLIPS" --out "$OUT/teacher-student"
for losses in adm-sdm2d adm-only adm-sdm-video sdm-only; do
    if [ ! -f "$OUT/$losses/student/student.json" ]; then
        rm -rf "$OUT/$losses"
        "$AVDM" distill --losses "$losses" --eval-clips 0 --out "$OUT/$losses"
    fi
    "$AVDM" eval --model "$OUT/$losses/student" --sampler student --clips "$CLIPS" --out "$OUT/eval-$losses"
done

{
    sed -n '1,2p' "$OUT/teacher/eval.md"
    sed -n '3,5p' "$OUT/teacher/eval.md" | sed 's/^| ddim-/| teacher ddim-/'
    sed -n '3p' "$OUT/teacher-student/eval.md" | sed 's/^| student-4 /| teacher student-4 (no training) /'
    for losses in adm-sdm2d adm-only adm-sdm-video sdm-only; do
        sed -n '3p' "$OUT/eval-$losses/eval.md" | sed "s/^| student-4 /| student-4 $losses /"
    done
    echo
    tail -n 1 "$OUT/teacher/eval.md"
} | tee "$OUT/table1.md"

# Fig. 4: one filmstrip row per model, clips 0 and 5 of each sample grid (32x32 tiles, 4 a row).
gifs=("$OUT/teacher/ddim-50.gif" "$OUT/teacher/ddim-25.gif" "$OUT/teacher/ddim-4.gif" "$OUT/teacher-student/student-4.gif")
for losses in adm-sdm2d adm-only adm-sdm-video sdm-only; do
    gifs+=("$OUT/eval-$losses/student-4.gif")
done
tools/bench/filmstrip.sh "$OUT/fig4.png" "${gifs[@]}"
echo "wrote $OUT/table1.md and $OUT/fig4.png"
