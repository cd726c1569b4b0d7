"""Throughput of the data loaders on the synthetic motion dataset (or a --data folder).

Measures, single-threaded torch in every process:
- bare decord: ``VideoReader(path, num_threads=1).get_batch(16 frames, stride 4)`` per clip;
- PyTorchVideo's ``EncodedVideo.get_clip`` (pyav and decord) for the same clips;
- the pretraining loader (16x224x224, multi-scale crop + flip + normalise) per decoder, worker
  count and repeated sampling (1, 2), built as the training job builds it (seeded samples,
  reading ahead across batches);
- the multi-view test loader (5x3 views from one decode) against a naive loader decoding
  once per view;
- the peak RSS of one worker on 720p sources (pretraining and multi-view loaders).
Prints one line per figure, the ratios, and as its last line one JSON object with everything.
"""
import argparse
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Callable, Dict, List

import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset, RandomSampler

from common.data import add_data_config, batch_inputs, build_dataset, collate_views
from common.engine.builders import make_loader
from common.engine.sampling import SEED_RANGE, SeededDataset
from videoconvmae.data.annotations import read_path_label_list
from videoconvmae.data.decoders import build_decoder
from videoconvmae.data.frame_sampling import evenly_spaced_stride_clips
from videoconvmae.data.synthetic import make_synthetic_video_dataset
from videoconvmae.data.transforms import MultiViewTransform

NUM_FRAMES, STRIDE, CROP = 16, 4, 224
SPAN = NUM_FRAMES * STRIDE


def make_cfg(data_dir: str, *, backend: str = "decord", repeats: int = 1) -> CfgNode:
    cfg = CfgNode()
    add_data_config(cfg)
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL.NUM_CLASSES = 400
    cfg.DATA.DECODING_BACKEND, cfg.DATA.REPEATED_SAMPLING = backend, repeats
    return cfg


def train_paths(data_dir: str) -> List[str]:
    return [video.path for video in read_path_label_list(f"{data_dir}/train.csv")]


def random_indices(num_frames: int) -> List[int]:
    start = random.randint(0, max(0, num_frames - SPAN))
    return [min(start + STRIDE * i, num_frames - 1) for i in range(NUM_FRAMES)]


def rate(fn: Callable[[], int], seconds: float) -> float:
    """Items per second of repeated ``fn()`` calls (each returns its item count), after one warm-up."""
    fn()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        count += fn()
    return count / (time.perf_counter() - start)


def bare_decord_rate(paths: List[str], seconds: float) -> float:
    import decord

    def one() -> int:
        reader = decord.VideoReader(random.choice(paths), num_threads=1)
        reader.get_batch(random_indices(len(reader))).asnumpy()
        return 1

    return rate(one, seconds)


def encoded_video_rate(paths: List[str], decoder: str, seconds: float) -> float:
    """PyTorchVideo's path: EncodedVideo.get_clip (float32 span), then every STRIDE-th frame."""
    from pytorchvideo.data.encoded_video import EncodedVideo

    def one() -> int:
        video = EncodedVideo.from_path(random.choice(paths), decoder=decoder, decode_audio=False)
        start = random.uniform(0, max(0.0, float(video.duration) - SPAN / 30))
        clip = video.get_clip(start, start + SPAN / 30)["video"]
        clip[:, ::STRIDE].contiguous()
        video.close()
        return 1

    return rate(one, seconds)


def loader_rate(dataset: Dataset, *, workers: int, batch_size: int, batches: int, per_item: str) -> float:
    """Clips (``per_item`` "clips": a training loader) or videos ("videos": a test loader) per
    second through a DataLoader made as the engine makes it: batches with read-ahead hints, and
    for training ``SeededDataset`` over ``(index, seed)`` keys."""
    indices = list(RandomSampler(dataset, replacement=True, num_samples=batch_size * (batches + 2)))
    if per_item == "clips":
        dataset, indices = SeededDataset(dataset), [(i, random.randrange(SEED_RANGE)) for i in indices]
    loader = make_loader(dataset, indices, batch_size, workers=workers, drop_last=False)
    iterator = iter(loader)
    next(iterator), next(iterator)  # warm-up: worker start
    count, start = 0, time.perf_counter()
    for batch in iterator:
        batch_inputs(batch)  # the consumer's share: uint8 -> normalised float
        count += len(batch["video"]) if per_item == "clips" else len(batch["label"])
    return count / (time.perf_counter() - start)


class NaivePerViewDataset(Dataset):
    """The multi-view test done naively: every view decodes its own clip."""

    def __init__(self, paths: List[str], clips: int, crops: int) -> None:
        self.paths, self.clips, self.crops = paths, clips, crops
        self.decoder = build_decoder("decord")
        # uint8 views normalised by the consumer, as in the real multi-view loader
        self.views = MultiViewTransform(crop_size=CROP, num_crops=crops, mean=[0.45] * 3, std=[0.225] * 3, normalize=False)
        self.collate_fn = partial(collate_views, normalization=([0.45] * 3, [0.225] * 3))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Dict[str, object]:
        views = []
        for t in range(self.clips):
            choose = lambda n, t=t: [evenly_spaced_stride_clips(n, num_frames=NUM_FRAMES, stride=STRIDE, num_clips=self.clips)[t]]  # noqa: E731
            for s in range(self.crops):
                decoded = self.decoder.decode(self.paths[index], choose)
                views.append(self.views(decoded.frames, decoded.clips)[s])
        return {"video": torch.stack(views), "label": 0}


def worker_peak_rss_mb(data_dir: str, mode: str, batch_size: int) -> float:
    """Peak RSS (MB) of the one worker of a loader, measured in a fresh process."""
    code = (
        "import resource, sys; sys.argv = ['x'];"
        "from benchmarks.data_throughput import make_cfg, loader_rate; from common.data import build_dataset;"
        f"ds = build_dataset(make_cfg({data_dir!r}), {mode!r});"
        f"loader_rate(ds, workers=1, batch_size={batch_size}, batches=4, per_item={'clips' if mode == 'pretrain' else 'videos'!r});"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="K400-style folder (train.csv, test.csv); default: generate 320x240 clips")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["decord", "pyav"])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per bare-decoder measurement")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per loader measurement")
    parser.add_argument("--skip-720p", action="store_true", help="skip the worker-memory measurement")
    return parser.parse_args()


def generate(root: str, height: int, width: int, clips_per_class) -> str:
    return str(make_synthetic_video_dataset(root, num_classes=4, clips_per_class=clips_per_class, num_frames=96, height=height, width=width, formats=("kinetics",))["kinetics"])


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="data_throughput_")
    data_dir = args.data or generate(f"{tmp}/320x240", 240, 320, (6, 0, 2))
    paths = train_paths(data_dir)
    figures: Dict[str, float] = {}

    def report(key: str, value: float) -> None:
        figures[key] = round(value, 2)
        print(f"{key}: {value:.2f}", flush=True)

    report("bare_decord_get_batch_clips_per_s", bare_decord_rate(paths, args.seconds))
    report("encoded_video_pyav_clips_per_s", encoded_video_rate(paths, "pyav", args.seconds))
    for backend in args.backends:
        for workers in args.workers:
            for repeats in (1, 2):
                dataset = build_dataset(make_cfg(data_dir, backend=backend, repeats=repeats), "pretrain")
                value = loader_rate(dataset, workers=workers, batch_size=8 // repeats, batches=args.batches, per_item="clips")
                report(f"pretrain_loader_{backend}_{workers}w_repeat{repeats}_clips_per_s", value)
    for workers in args.workers:
        test = build_dataset(make_cfg(data_dir), "test")
        report(f"multiview_loader_{workers}w_videos_per_s", loader_rate(test, workers=workers, batch_size=1, batches=args.batches, per_item="videos"))
        naive = NaivePerViewDataset([v.path for v in test.videos], 5, 3)
        report(f"naive_per_view_loader_{workers}w_videos_per_s", loader_rate(naive, workers=workers, batch_size=1, batches=max(2, args.batches // 4), per_item="videos"))
    if not args.skip_720p:
        hd_dir = generate(f"{tmp}/1280x720", 720, 1280, (2, 0, 1))
        report("worker_peak_rss_mb_720p_pretrain_loader_batch8", worker_peak_rss_mb(hd_dir, "pretrain", 8))
        # one multi-view item is already 15 clips (144 MB of float32)
        report("worker_peak_rss_mb_720p_multiview_loader_batch1", worker_peak_rss_mb(hd_dir, "test", 1))
    # Last: importing PyTorchVideo's decord wrapper switches decord's bridge for the process.
    report("encoded_video_decord_clips_per_s", encoded_video_rate(paths, "decord", args.seconds))

    bare = figures["bare_decord_get_batch_clips_per_s"]
    ratios = {
        "ratio_pretrain_1w_vs_bare_decord": figures["pretrain_loader_decord_1w_repeat1_clips_per_s"] / bare,
        "ratio_pretrain_1w_repeat2_vs_bare_decord": figures["pretrain_loader_decord_1w_repeat2_clips_per_s"] / bare,
        "ratio_pretrain_1w_vs_encoded_video_pyav": figures["pretrain_loader_decord_1w_repeat1_clips_per_s"] / figures["encoded_video_pyav_clips_per_s"],
        "ratio_multiview_1w_vs_naive_per_view": figures["multiview_loader_1w_videos_per_s"] / figures["naive_per_view_loader_1w_videos_per_s"],
    }
    for key, value in ratios.items():
        report(key, value)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
