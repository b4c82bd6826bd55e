"""The diffusers side of `avdm bench`: times diffusers' UNetMotionModel forward (and forward +
backward) on the shapes `avdm bench` uses, on the same machine and device (`--device cpu` or
`cuda`, `--dtype f32` or `bf16`, as `avdm bench --device/--dtype`), so that the Burn / PyTorch
ratio is measured side by side. Pinned: torch==2.15.0 diffusers==0.42.1.

    python tools/bench/bench_diffusers.py --size tiny --frames 16 --side 32 --repeat 3 --backward
    python tools/bench/bench_diffusers.py --size full --frames 16 --side 64 --repeat 3

tiny: the shipped toy teacher's UNet (assets/toy/teacher/unet); full: SD1.5's UNet with motion
adapter v1-5-2 (tests/fixtures/configs/sd15_unet_motion_v1_5_2, random weights). Prints one
JSON line per timing: the median of --repeat runs after one warm-up. Never run by CI.
"""

import argparse
import json
import os
import statistics
import time

import torch
from diffusers import UNetMotionModel

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")

parser = argparse.ArgumentParser()
parser.add_argument("--size", choices=["tiny", "full"], required=True)
parser.add_argument("--frames", type=int, default=16)
parser.add_argument("--side", type=int, required=True, help="input side: pixels (tiny) or latents (full)")
parser.add_argument("--batch", type=int, default=1)
parser.add_argument("--repeat", type=int, default=3)
parser.add_argument("--backward", action="store_true")
parser.add_argument("--threads", type=int, default=os.cpu_count())
parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
parser.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
args = parser.parse_args()
device = torch.device(args.device)
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
torch.set_num_threads(args.threads)
torch.manual_seed(0)

if args.size == "tiny":
    unet = UNetMotionModel.from_pretrained(os.path.join(ROOT, "assets/toy/teacher/unet"))
else:
    config = UNetMotionModel.load_config(os.path.join(ROOT, "tests/fixtures/configs/sd15_unet_motion_v1_5_2"))
    unet = UNetMotionModel.from_config(config)
unet = unet.to(device=device, dtype=dtype)
c = unet.config
sample = torch.randn(args.batch, c.in_channels, args.frames, args.side, args.side).to(device, dtype)
timestep = torch.full((args.batch,), 500, device=device)
# diffusers 0.42's UNetMotionModel takes one text embedding per frame, as avdm's does.
text = torch.randn(args.batch * args.frames, 77, c.cross_attention_dim).to(device, dtype)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run):
    run()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runs = []
    for _ in range(max(args.repeat, 1)):
        start = time.perf_counter()
        run()
        sync()
        runs.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(runs), runs, peak


def forward():
    with torch.no_grad():
        unet(sample, timestep, encoder_hidden_states=text).sample.sum().item()


def forward_backward():
    unet.zero_grad(set_to_none=True)
    unet(sample, timestep, encoder_hidden_states=text).sample.mean().backward()


shape = list(sample.shape)
unet.eval()
cases = [("forward", forward)] + ([("forward + backward", forward_backward)] if args.backward else [])
for what, run in cases:
    median, runs, peak = timed(run)
    where = f"{args.device}, {args.dtype}" + (f", {args.threads} threads" if device.type == "cpu" else "")
    print(json.dumps({"what": f"{args.size} UNetMotionModel {what} (diffusers, torch {torch.__version__}, {where})",
                      "shape": shape, "median_s": median, "runs": runs, "device_peak_mib": peak}))
