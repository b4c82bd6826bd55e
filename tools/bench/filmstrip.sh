#!/usr/bin/env bash
# A figure of sample grids: one filmstrip row per GIF grid, top to bottom, each the 8 frames of
# its clips 0 and 5 (32x32 tiles, 4 a row, as `avdm eval` writes them), doubled in size.
#
#   tools/bench/filmstrip.sh OUT.png GRID.gif [GRID.gif ...]
# Needs ffmpeg.
set -euo pipefail
out=$1
shift
inputs=() graph="" rows=""
i=0
for gif in "$@"; do
    inputs+=(-i "$gif")
    graph+="[$i]split[a$i][b$i];[a$i]crop=32:32:0:0,tile=8x1[x$i];[b$i]crop=32:32:32:32,tile=8x1[y$i];"
    graph+="[x$i][y$i]hstack[r$i];"
    rows+="[r$i]"
    i=$((i + 1))
done
stack="vstack=inputs=$#,"
if [ $# -eq 1 ]; then stack=""; fi
ffmpeg -v error -y "${inputs[@]}" -filter_complex "${graph}${rows}${stack}scale=iw*2:ih*2:flags=neighbor" \
    -frames:v 1 "$out"
