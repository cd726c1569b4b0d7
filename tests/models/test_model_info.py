"""tools/model_info.py and the fvcore FLOP counting it uses."""
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.flops import forward_flops
from common.models import create_model

ROOT = Path(__file__).resolve().parents[2]


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def model_info(capsys, *args: str) -> str:
    """What ``python tools/model_info.py ARGS`` prints, run in this process."""
    runpy.run_path(str(ROOT / "tools" / "model_info.py"), run_name="tools_model_info")["main"](list(args))
    return capsys.readouterr().out


def numbers_after(text: str, label: str) -> list:
    line = next(line for line in text.splitlines() if line.startswith(label))
    return [float(n) for n in re.findall(r"\d+\.\d+", line[len(label):])]


def test_forward_flops_counts_attention():
    q = torch.randn(2, 3, 5, 4)
    k = v = torch.randn(2, 3, 7, 4)
    assert forward_flops(_Attention(), (q, k, v)) == 2 * 3 * 5 * 7 * (4 + 4)
    assert forward_flops(nn.Linear(8, 4), (torch.randn(3, 8),)) == 3 * 8 * 4


def test_forward_flops_counts_layer_norm_of_any_rank():
    x = torch.randn(2, 3, 1, 2, 2, 8)  # six dims, as in the sparse stages
    assert forward_flops(nn.LayerNorm(8), (x,)) == 5 * x.numel()
    assert forward_flops(nn.LayerNorm(8, elementwise_affine=False), (x[0],)) == 4 * x[0].numel()


def test_model_info_reports_params_and_sparse_dense_and_random_flops(capsys):
    name = "convmae_convvit_small_patch16"
    out = model_info(capsys, name, "--img-size", "64")
    models = {kwargs: create_model(name, img_size=64, **dict(kwargs)).eval()
              for kwargs in ((), (("sparse_conv", False),), (("masking", "input_token"),))}
    sparse, dense, random = (forward_flops(m, (torch.randn(1, 3, 64, 64),)) / 1e9 for m in models.values())
    total = sum(p.numel() for p in models[()].parameters())
    with torch.device("meta"):  # the encoder alone is the classifier without its head
        encoder = sum(p.numel() for p in create_model("convvit_small_patch16", img_size=64, num_classes=0).parameters())
    assert numbers_after(out, "parameters:") == [round(total / 1e6, 2), round(encoder / 1e6, 2)]
    assert encoder < total
    block = "forward GFLOPs, block-wise masking (ratio 0.75),"
    assert numbers_after(out, f"{block} sparse stages 1-2 (default):") == [round(sparse, 2)]
    assert numbers_after(out, f"{block} dense masked path:") == [round(dense, 2)]
    assert numbers_after(out, "forward GFLOPs, input-token random masking:") == [
        round(random, 2), round(random / dense, 2), round(random / sparse, 2)]
    assert sparse < dense < random  # sparse stages skip masked blocks; input-token masking runs stage 3 densely
    figures = json.loads(out.splitlines()[-1])  # the same figures, unrounded, as the last line
    assert figures["gflops_sparse"] == sparse and figures["gflops_dense_masked"] == dense
    assert figures["input_token_over_dense_masked"] == random / dense and figures["parameters_m"] == total / 1e6


def test_model_info_classifier_and_list(capsys):
    name = "video_convvit_small_patch16"
    out = model_info(capsys, name, "--img-size", "32", "--num-frames", "4")
    model = create_model(name, img_size=32, num_frames=4).eval()
    total = sum(p.numel() for p in model.parameters())
    head = 384 * 400 + 400  # Linear(C3 = 384, 400 classes: the video default, Kinetics-400)
    assert numbers_after(out, "parameters:") == [round(total / 1e6, 2), round((total - head) / 1e6, 2)]
    gflops = forward_flops(model, (torch.randn(1, 3, 4, 32, 32),)) / 1e9
    assert numbers_after(out, "forward GFLOPs:") == [round(gflops, 2)]
    assert json.loads(out.splitlines()[-1])["gflops"] == gflops
    listed = subprocess.run([sys.executable, "tools/model_info.py", "--list"], cwd=ROOT,  # the script as run
                            capture_output=True, text=True, check=True).stdout.split()
    assert "videoconvmae_base_patch16" in listed
