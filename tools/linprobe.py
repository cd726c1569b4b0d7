"""Linear probe: BatchNorm (no affine) + Linear head on the frozen encoder.

Usage: python tools/linprobe.py --cfg CONFIG.yaml [KEY VALUE ...]   (torchrun --nproc_per_node=N for DDP)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.engine.cli import main  # noqa: E402

if __name__ == "__main__":
    main("linprobe")
