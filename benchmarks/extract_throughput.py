"""Window-mode feature extraction over a long video vs the naive way.

Generates a 320x240 H.264 clip (default 60 s at 30 fps), builds the demo-size video encoder
(configs/demo/video_finetune.yaml sizes, random weights) for windows of 16 frames at the full
frame rate (DATA.SAMPLING_RATE 1), stride 8, and extracts one feature per window:
- ours: ``common.engine.features.extract_window_features`` (every frame decoded and
  preprocessed once, windows assembled from the shared frames);
- naive: each window decoded separately with a fresh reader (the project's decoder, decord),
  preprocessed with ``CentreViewTransform``, forwarded in batches of the same size.
Both produce the same features (checked). Prints the times, ``extract_speedup`` = naive / ours
(end to end, model forward included), ``pipeline_speedup`` (the same without the forward time,
which both spend alike: decoding + preprocessing + window assembly), the decode share of each, and
as its last line one JSON object with everything.

Usage: python -m benchmarks.extract_throughput [--seconds 60] [--window-frames 16] [--window-stride 8]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.config import load_config  # noqa: E402
from common.engine.builders import build_model  # noqa: E402
from common.engine import features as features_module  # noqa: E402
from common.engine.features import embed, extract_window_features  # noqa: E402
from common.engine.inference import LoadedModel, load_run  # noqa: E402
from common.process_settings import configure_process  # noqa: E402
from videoconvmae.data import CentreViewTransform, build_decoder  # noqa: E402
from videoconvmae.data.decoders import VideoFile  # noqa: E402
from videoconvmae.data.synthetic import render_motion_clip, write_video  # noqa: E402
from videoconvmae.data.windows import window_indices  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FPS, HEIGHT, WIDTH, CROP, BATCH = 30, 240, 320, 80, 8


def write_long_video(path: Path, seconds: float) -> int:
    """A ``seconds`` long 320x240 H.264 clip of the motion dataset; returns its frame count."""
    frames = render_motion_clip(label=0, num_classes=4, num_frames=round(seconds * FPS), height=HEIGHT, width=WIDTH,
                                rng=np.random.default_rng(0), background="blocks", square="textured")
    write_video(path, frames, fps=FPS)
    return len(frames)


def tiny_run(folder: Path, window_frames: int) -> LoadedModel:
    """The demo-size classifier, random weights, saved with its config and loaded with ``load_run``."""
    cfg = load_config(str(REPO / "configs" / "demo" / "video_finetune.yaml"),
                      ["DATA.NUM_FRAMES", str(window_frames), "DATA.SAMPLING_RATE", "1", "DATA.TEST_CROP_SIZE",
                       str(CROP), "TRAIN.CHECKPOINT_FILE_PATH", "", "DATA.PATH_TO_DATA_DIR", str(folder)])
    model = build_model(cfg, pretraining=False, crop_size=CROP)
    torch.save({"model": model.state_dict(), "cfg": cfg.dump()}, folder / "checkpoint.pth")
    return load_run(checkpoint=folder / "checkpoint.pth", device="cpu")


class Timer:
    """Seconds spent in wrapped calls."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return timed


def time_ours(loaded: LoadedModel, path: str, stride: int) -> Dict[str, float]:
    """Our window mode, with the time spent reading frames (decoding) and in the forward measured inside it."""
    decode, forward = Timer(), Timer()
    read, forward_fn = VideoFile.read, features_module.embed
    VideoFile.read, features_module.embed = decode.wrap(read), forward.wrap(forward_fn)
    try:
        start = time.perf_counter()
        result = extract_window_features(loaded, path, window_stride=stride, batch_size=BATCH)
        total = time.perf_counter() - start
    finally:
        VideoFile.read, features_module.embed = read, forward_fn
    return {"seconds": total, "decode_seconds": decode.seconds, "forward_seconds": forward.seconds,
            "features": result.features}


def time_naive(loaded: LoadedModel, path: str, num_frames: int, window_frames: int, stride: int) -> Dict[str, float]:
    """Each window decoded by a fresh reader, preprocessed, forwarded in batches of ``BATCH``."""
    data = loaded.cfg.DATA
    decoder = build_decoder("decord", fallback=False)
    centre = CentreViewTransform(crop_size=CROP, mean=data.MEAN, std=data.STD)
    count = (num_frames - window_frames) // stride + 1
    decode, forward = Timer(), Timer()
    decode_fn, forward_fn = decode.wrap(decoder.decode), forward.wrap(embed)
    features, pending = [], []
    start = time.perf_counter()
    for k in range(count):
        frames = torch.tensor(window_indices(k, window_frames=window_frames, window_stride=stride,
                                             num_sampled=num_frames))
        pending.append(centre(decode_fn(path, lambda n, f=frames: [f]).clip(0)))
        if len(pending) == BATCH or k == count - 1:
            features.append(forward_fn(loaded.model, torch.stack(pending)).numpy())
            pending = []
    return {"seconds": time.perf_counter() - start, "decode_seconds": decode.seconds,
            "forward_seconds": forward.seconds, "features": np.concatenate(features)}


def main(argv: List[str] = None) -> Dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--window-frames", type=int, default=16)
    parser.add_argument("--window-stride", type=int, default=8)
    args = parser.parse_args(argv)
    configure_process()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long.mp4"
        num_frames = write_long_video(video, args.seconds)
        loaded = tiny_run(Path(tmp), args.window_frames)
        embed(loaded.model, torch.zeros(BATCH, 3, args.window_frames, CROP, CROP))  # warm-up, not timed
        ours = time_ours(loaded, str(video), args.window_stride)
        naive = time_naive(loaded, str(video), num_frames, args.window_frames, args.window_stride)
    max_diff = float(np.abs(ours["features"] - naive["features"]).max())
    record = {
        "video": f"{args.seconds:g} s {WIDTH}x{HEIGHT} H.264 at {FPS} fps ({num_frames} frames)",
        "windows": len(ours["features"]), "window_frames": args.window_frames, "window_stride": args.window_stride,
        "ours_s": round(ours["seconds"], 3), "naive_s": round(naive["seconds"], 3),
        "extract_speedup": round(naive["seconds"] / ours["seconds"], 2),
        "ours_forward_s": round(ours["forward_seconds"], 3), "naive_forward_s": round(naive["forward_seconds"], 3),
        "pipeline_speedup": round((naive["seconds"] - naive["forward_seconds"])
                                  / (ours["seconds"] - ours["forward_seconds"]), 2),
        "ours_decode_share": round(ours["decode_seconds"] / ours["seconds"], 3),
        "naive_decode_share": round(naive["decode_seconds"] / naive["seconds"], 3),
        "max_feature_difference": max_diff, "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"{record['windows']} windows of {args.window_frames} frames, stride {args.window_stride}, over {record['video']}")
    for name in ("ours", "naive"):
        print(f"{name:<5} {record[name + '_s']:.2f} s (decode {100 * record[name + '_decode_share']:.0f}%, "
              f"model forward {record[name + '_forward_s']:.2f} s)")
    print(f"extract_speedup {record['extract_speedup']:.2f}x, without the forward {record['pipeline_speedup']:.2f}x, "
          f"max feature difference {max_diff:.2e}")
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
