"""Parameter count and forward GFLOPs (fvcore) of any registered model.

    python tools/model_info.py convmae_convvit_base_patch16
    python tools/model_info.py videoconvmae_base_patch16 --num-frames 16 --img-size 224
    python tools/model_info.py --list

Parameters are printed in total and for the encoder alone (without the pretraining decoder,
mask token and multi-scale decode layers, or the classifier head). For pretraining models it
reports the forward GFLOPs under block-wise masking on both paths (sparse stages 1-2, the
default, and the dense masked path) and under input-token random masking, which makes stage 3
process every token: the paper's 1.7x for ConvMAE-B compares the dense masked path with it.
The last line repeats the figures as one JSON object, as the benchmarks do.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.checkpoint import PRETRAIN_ONLY_PREFIXES  # noqa: E402
from common.flops import forward_flops  # noqa: E402
from common.models import MaskedAutoencoderConvViT, create_model, list_models  # noqa: E402

HEAD_PREFIXES = ("head.",)  # the classifier's last layer, not part of the encoder


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="videoconvmae_base_patch16", help="registered model name")
    parser.add_argument("--img-size", type=int, nargs="+", default=[224], help="H [W]")
    parser.add_argument("--num-frames", type=int, default=None, help="clip length (video models)")
    parser.add_argument("--mask-ratio", type=float, default=None, help="pretraining mask ratio")
    parser.add_argument("--list", action="store_true", help="list the registered models and exit")
    return parser.parse_args(argv)


def build(name: str, img_size, num_frames, **extra) -> torch.nn.Module:
    kwargs = dict(img_size=img_size[0] if len(img_size) == 1 else tuple(img_size), **extra)
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    return create_model(name, **kwargs).eval()


def encoder_parameters(model: torch.nn.Module) -> int:
    """Parameters of the encoder alone: without the pretraining-only layers or the classifier head."""
    skip = PRETRAIN_ONLY_PREFIXES + HEAD_PREFIXES
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(skip))


def describe(model: torch.nn.Module, mask_ratio) -> float:
    """GFLOPs of one sample's forward pass."""
    x = torch.randn(1, model.in_chans, *model.input_size)
    with torch.no_grad():
        inputs = (x, mask_ratio) if isinstance(model, MaskedAutoencoderConvViT) else (x,)
        return forward_flops(model, inputs) / 1e9


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.list:
        print("\n".join(list_models()))
        return
    model = build(args.model, args.img_size, args.num_frames)
    params = sum(p.numel() for p in model.parameters())
    encoder = encoder_parameters(model)
    figures = {"model": args.model, "parameters_m": params / 1e6, "encoder_parameters_m": encoder / 1e6}
    print(f"model: {args.model}  input: {tuple(model.input_size)}  stage-3 grid: {model.grid}")
    print(f"parameters: {params / 1e6:.2f} M total, {encoder / 1e6:.2f} M encoder")
    gflops = describe(model, args.mask_ratio)
    if not isinstance(model, MaskedAutoencoderConvViT):
        print(f"forward GFLOPs: {gflops:.2f}")
        print(json.dumps({**figures, "gflops": gflops}))
        return
    ratio = model.mask_ratio if args.mask_ratio is None else args.mask_ratio
    dense = describe(build(args.model, args.img_size, args.num_frames, sparse_conv=False), args.mask_ratio)
    random_gflops = describe(build(args.model, args.img_size, args.num_frames, masking="input_token"), args.mask_ratio)
    print(f"forward GFLOPs, block-wise masking (ratio {ratio}), sparse stages 1-2 (default): {gflops:.2f}")
    print(f"forward GFLOPs, block-wise masking (ratio {ratio}), dense masked path: {dense:.2f}")
    print(f"forward GFLOPs, input-token random masking: {random_gflops:.2f} "
          f"({random_gflops / dense:.2f}x the dense masked path, {random_gflops / gflops:.2f}x the sparse path)")
    print(json.dumps({**figures, "gflops_sparse": gflops, "gflops_dense_masked": dense,
                      "gflops_input_token": random_gflops, "input_token_over_dense_masked": random_gflops / dense,
                      "input_token_over_sparse": random_gflops / gflops}))


if __name__ == "__main__":
    main()
