#!/usr/bin/env bash
# Style transfer in miniature (the paper's Fig. 5) on the toy world: the 2D teacher is swapped
# for a restyled image model of the same family, and the student takes its look while keeping
# the video teacher's motion. Prints the Markdown table and writes it to $OUT/style.md; writes
# $OUT/fig5.png: for each row, top to bottom, the 8 frames of two eval clips.
#
#   tools/bench/toy_style.sh [clips] [out] [style]      (defaults: 48 clips, runs/style, grey)
#
# 1. The restyled image model: the shipped teacher's image model (2D UNet; its text encoder
#    frozen) fine-tuned for 1500 steps on the restyled world (`grey`: shapes on a grey
#    backdrop; `outline`: hollow shapes), written as an image pipeline folder
#    ($OUT/$STYLE/image-teacher).
# 2. Two students of the shipped teacher with the toy preset but 50 updates (the student of the
#    restyled teacher takes the look by then and loses shapes and motion after: book,
#    "Style transfer"), differing only in the 2D teacher: its own 2D UNet (the method), and
#    the restyled one (`--teacher-2d`).
# 3. The teacher (DDIM 25, CFG 3) and both students measured by `avdm eval` on the same clips;
#    the `style` column is the style probe's reading (the look most clips are drawn in, and
#    the fraction of clips drawn in it).
# Finished parts are kept when the script is run again. Needs ffmpeg (for the figure).
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIPS=${1:-48}
OUT=${2:-runs/style}
STYLE=${3:-grey}
AVDM=target/release/avdm
cargo build --release --quiet
mkdir -p "$OUT"

if [ ! -d "$OUT/$STYLE/image-teacher" ]; then
    resume=()
    if [ -d "$OUT/$STYLE/image" ]; then resume=(--resume); fi
    "$AVDM" train-teacher --stage image --style "$STYLE" --init-from assets/toy/teacher --image-steps 1500 \
        --out "$OUT/$STYLE" "${resume[@]}"
fi
if [ ! -f "$OUT/teacher/eval.md" ]; then
    "$AVDM" eval --steps 25 --guidance 3 --clips "$CLIPS" --out "$OUT/teacher"
fi
for name in own "$STYLE"; do
    if [ ! -f "$OUT/distill-$name/student/student.json" ]; then
        rm -rf "$OUT/distill-$name"
        extra=()
        if [ "$name" = "$STYLE" ]; then extra=(--teacher-2d "$OUT/$STYLE/image-teacher"); fi
        "$AVDM" distill --steps 50 --eval-clips 0 --out "$OUT/distill-$name" "${extra[@]}"
    fi
    "$AVDM" eval --model "$OUT/distill-$name/student" --sampler student --clips "$CLIPS" --out "$OUT/eval-$name"
done

{
    sed -n '1,2p' "$OUT/teacher/eval.md"
    sed -n '3p' "$OUT/teacher/eval.md" | sed 's/^| ddim-/| teacher ddim-/'
    sed -n '3p' "$OUT/eval-own/eval.md" | sed 's/^| student-4 /| student-4, its own 2D teacher /'
    sed -n '3p' "$OUT/eval-$STYLE/eval.md" | sed "s/^| student-4 /| student-4, the $STYLE 2D teacher /"
    echo
    tail -n 1 "$OUT/teacher/eval.md"
} | tee "$OUT/style.md"

# Fig. 5: one filmstrip row per model, clips 0 and 5 of each sample grid (32x32 tiles, 4 a row).
gifs=("$OUT/teacher/ddim-25.gif" "$OUT/eval-own/student-4.gif" "$OUT/eval-$STYLE/student-4.gif")
tools/bench/filmstrip.sh "$OUT/fig5.png" "${gifs[@]}"
echo "wrote $OUT/style.md and $OUT/fig5.png"
