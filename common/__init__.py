"""Shared core of ConvMAE and VideoConvMAE: layers, masking, the masked autoencoder, engines."""
import os

# PyTorch backs CPU tensors of 2 MB and more with transparent huge pages when this is set
# (read at its first such allocation). A fresh batch of video clips then costs ~500x fewer page
# faults: the uint8 -> float normalisation of 8 clips of 16x224x224 takes 18 ms instead of 61 ms
# on the 2-core CPU of docs/performance.md. An explicit setting (e.g. 0) wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
