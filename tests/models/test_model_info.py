"""tools/model_info.py and the fvcore FLOP counting it uses."""
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.flops import forward_flops

ROOT = Path(__file__).resolve().parents[2]


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_forward_flops_counts_attention():
    q = torch.randn(2, 3, 5, 4)
    k = v = torch.randn(2, 3, 7, 4)
    assert forward_flops(_Attention(), (q, k, v)) == 2 * 3 * 5 * 7 * (4 + 4)
    assert forward_flops(nn.Linear(8, 4), (torch.randn(3, 8),)) == 3 * 8 * 4


def test_model_info_reports_params_and_block_vs_random_flops():
    out = subprocess.run(
        [sys.executable, "tools/model_info.py", "convmae_convvit_small_patch16", "--img-size", "64"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "parameters:" in out and "block-wise masking (ratio 0.75)" in out
    ratio = float(out.split("(")[-1].split("x")[0])
    assert ratio > 1.2  # stage 3 sees every token under input-token masking


def test_model_info_classifier_and_list():
    out = subprocess.run(
        [sys.executable, "tools/model_info.py", "video_convvit_small_patch16", "--img-size", "32", "--num-frames", "4"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    assert "forward GFLOPs:" in out
    listed = subprocess.run([sys.executable, "tools/model_info.py", "--list"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    assert "videoconvmae_base_patch16" in listed
