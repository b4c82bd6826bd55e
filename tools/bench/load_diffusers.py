"""Times diffusers' from_pretrained on a pipeline folder and a motion adapter, as a user loads
AnimateDiff: MotionAdapter.from_pretrained, then AnimateDiffPipeline.from_pretrained with it (the
UNet and the adapter merged into a UNetMotionModel), in float32 (diffusers' default; fp16 files
are upcast) or --dtype bf16. Prints one JSON line: seconds and the process's peak RSS. Run it
once per measurement (a fresh process), as `avdm bench --load` is.

    python tools/bench/load_diffusers.py PIPELINE ADAPTER [--dtype f32|bf16]
"""

import argparse
import json
import resource
import time

import torch
from diffusers import AnimateDiffPipeline, MotionAdapter

parser = argparse.ArgumentParser()
parser.add_argument("pipeline")
parser.add_argument("adapter")
parser.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
args = parser.parse_args()
dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]

torch.set_num_threads(torch.get_num_threads())
start = time.perf_counter()
adapter = MotionAdapter.from_pretrained(args.adapter, torch_dtype=dtype)
pipe = AnimateDiffPipeline.from_pretrained(args.pipeline, motion_adapter=adapter, torch_dtype=dtype)
seconds = time.perf_counter() - start
params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters())
print(json.dumps({
    "what": "diffusers AnimateDiffPipeline.from_pretrained (with MotionAdapter.from_pretrained)",
    "pipeline": args.pipeline, "dtype": args.dtype, "seconds": round(seconds, 2), "parameters": params,
    "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "torch": torch.__version__, "diffusers": __import__("diffusers").__version__,
    "accelerate": __import__("accelerate").__version__,
}))
