"""Parameter count and forward GFLOPs (fvcore) of any registered model.

    python tools/model_info.py convmae_convvit_base_patch16
    python tools/model_info.py videoconvmae_base_patch16 --num-frames 16 --img-size 224
    python tools/model_info.py --list

For pretraining models it also reports the GFLOPs under input-token random masking, which
makes stage 3 process every token (the paper reports 1.7x for ConvMAE-B).
"""
from __future__ import annotations

import argparse
import logging

import torch

from common.flops import forward_flops
from common.models import MaskedAutoencoderConvViT, create_model, list_models


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default="videoconvmae_base_patch16", help="registered model name")
    parser.add_argument("--img-size", type=int, nargs="+", default=[224], help="H [W]")
    parser.add_argument("--num-frames", type=int, default=None, help="clip length (video models)")
    parser.add_argument("--mask-ratio", type=float, default=None, help="pretraining mask ratio")
    parser.add_argument("--list", action="store_true", help="list the registered models and exit")
    return parser.parse_args()


def build(name: str, img_size, num_frames, **extra) -> torch.nn.Module:
    kwargs = dict(img_size=img_size[0] if len(img_size) == 1 else tuple(img_size), **extra)
    if num_frames is not None:
        kwargs["num_frames"] = num_frames
    return create_model(name, **kwargs).eval()


def describe(model: torch.nn.Module, mask_ratio) -> float:
    """GFLOPs of one sample's forward pass."""
    x = torch.randn(1, model.in_chans, *model.input_size)
    with torch.no_grad():
        inputs = (x, mask_ratio) if isinstance(model, MaskedAutoencoderConvViT) else (x,)
        return forward_flops(model, inputs) / 1e9


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.list:
        print("\n".join(list_models()))
        return
    model = build(args.model, args.img_size, args.num_frames)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.model}  input: {tuple(model.input_size)}  stage-3 grid: {model.grid}")
    print(f"parameters: {params / 1e6:.2f} M")
    gflops = describe(model, args.mask_ratio)
    if not isinstance(model, MaskedAutoencoderConvViT):
        print(f"forward GFLOPs: {gflops:.2f}")
        return
    ratio = model.mask_ratio if args.mask_ratio is None else args.mask_ratio
    random_model = build(args.model, args.img_size, args.num_frames, masking="input_token")
    random_gflops = describe(random_model, args.mask_ratio)
    print(f"forward GFLOPs, block-wise masking (ratio {ratio}): {gflops:.2f}")
    print(f"forward GFLOPs, input-token random masking: {random_gflops:.2f} "
          f"({random_gflops / gflops:.2f}x block-wise)")


if __name__ == "__main__":
    main()
