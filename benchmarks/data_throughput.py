"""CPU time per delivered clip of the data loaders, with the wall-clock rates beside it.

On an accelerator node the CPU cores feed the model, so the currency is CPU time (user + sys)
per clip, which does not depend on how a shared machine's cores were split during the run. For
each measurement the CPU time of every process involved (the main process, the loader's worker
processes, every thread of each: decoders' own threads included) is read from
``/proc/PID/stat`` before and after the timed window, and divided by the clips delivered.

Measured on the synthetic motion dataset (generated 320x240 and 1280x720 H.264 clips of 96
frames), or on a ``--data`` folder (train.csv / test.csv), 16 frames stride 4, 224x224 crops,
torch single-threaded in every process:
- bare decoding: decord ``VideoReader(path, num_threads=1).get_batch`` on a fresh reader per
  clip, and PyAV (open, decode up to the last wanted frame);
- the pretraining loader (multi-scale crop + flip, uint8 transport) as the training job
  builds it, repeated sampling 1, 2, 4 (8 clips per batch); the consumer's uint8 -> float
  normalisation, which runs on the accelerator in training, is timed on its own line and not
  counted;
- the multi-view test loader (5x3 views from one decode) against one decode per view;
- the 720p sources against a copy prepared by ``tools/prepare_videos.py`` (short side 320);
- the peak RSS of one worker on 720p sources.
Prints one line per figure and, as its last line, one JSON object with everything.
"""
import argparse
import json
import logging
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Sequence

import av
import torch
from fvcore.common.config import CfgNode
from torch.utils.data import Dataset, RandomSampler

from common.data import add_data_config, batch_inputs, build_dataset, collate_views
from common.engine.builders import make_loader
from common.engine.sampling import SEED_RANGE, SeededDataset
from common.process_settings import configure_process
from videoconvmae.data.annotations import read_path_label_list
from videoconvmae.data.decoders import build_decoder
from videoconvmae.data.frame_sampling import evenly_spaced_stride_clips
from videoconvmae.data.prepare import prepare_videos
from videoconvmae.data.synthetic import make_synthetic_video_dataset
from videoconvmae.data.transforms import MultiViewTransform

NUM_FRAMES, STRIDE, CROP = 16, 4, 224
SPAN = NUM_FRAMES * STRIDE
CLIPS_PER_BATCH = 8
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + sys CPU seconds of process ``pid``, all its threads (live and ended) together."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def total_cpu_seconds(pids: Sequence[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


def wait_until_idle(pids: Sequence[int], *, quiet_s: float = 0.3, limit_s: float = 60.0) -> None:
    """Returns once ``pids`` used no CPU for ``quiet_s`` (their queued work is done)."""
    deadline, last, quiet_since = time.monotonic() + limit_s, total_cpu_seconds(pids), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = total_cpu_seconds(pids)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return


@dataclass
class Cost:
    """CPU milliseconds per delivered item and the wall-clock items per second."""

    cpu_ms: float
    per_s: float


def make_cfg(data_dir: str, *, backend: str = "decord", repeats: int = 1) -> CfgNode:
    cfg = CfgNode()
    add_data_config(cfg)
    cfg.DATA.PATH_TO_DATA_DIR = data_dir
    cfg.MODEL = CfgNode({"NUM_CLASSES": 400})
    cfg.DATA.DECODING_BACKEND, cfg.DATA.REPEATED_SAMPLING = backend, repeats
    return cfg


def train_paths(data_dir: str) -> List[str]:
    return [video.path for video in read_path_label_list(f"{data_dir}/train.csv")]


def random_indices(num_frames: int) -> List[int]:
    start = random.randint(0, max(0, num_frames - SPAN))
    return [min(start + STRIDE * i, num_frames - 1) for i in range(NUM_FRAMES)]


def in_process_cost(fn: Callable[[], int], items: int) -> Cost:
    """Cost of ``fn()`` calls (each returns its item count) in this process until ``items`` are
    done, after one warm-up call; this process's CPU clock counts all its threads."""
    fn()
    count, cpu, wall = 0, time.process_time(), time.perf_counter()
    while count < items:
        count += fn()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Cost(1000 * cpu / count, count / wall)


def bare_decord(paths: List[str]) -> Callable[[], int]:
    import decord

    def one() -> int:
        reader = decord.VideoReader(random.choice(paths), num_threads=1)
        reader.get_batch(random_indices(len(reader))).asnumpy()
        return 1

    return one


def bare_pyav(paths: List[str]) -> Callable[[], int]:
    """Open, decode from the start up to the last wanted frame, convert the wanted ones to RGB
    (the header frame count is right for the H.264 mp4 sources measured here)."""

    def one() -> int:
        with av.open(random.choice(paths)) as container:
            stream = container.streams.video[0]
            wanted = set(random_indices(stream.frames))
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frame.to_ndarray(format="rgb24")
                if number >= max(wanted):
                    break
        return 1

    return one


def touch_pages(tensor: torch.Tensor) -> None:
    """Reads one byte per 4 KiB page: maps a received shared-memory batch into this process, as
    any first use does (a copy to the device would), without the normalisation's arithmetic."""
    tensor.reshape(-1).view(torch.uint8)[::4096].sum()


def loader_cost(dataset: Dataset, *, workers: int, batch_size: int, batches: int, per_item: str) -> Dict[str, Cost]:
    """CPU and wall cost per clip (``per_item`` "clips": a training loader over ``SeededDataset``)
    or per video ("videos": a test loader) through a DataLoader made as the engine makes it.

    Two warm-up batches, then the workers are let finish their queued batches (prefetched, so
    paid before the window) and the window runs to the end. Workers' CPU is divided by the
    items they produced in the window, the main process's by the items it received; the
    consumer's uint8 -> float normalisation (``batch_inputs``) is timed apart ("normalize")."""
    warmup = 2
    indices = list(RandomSampler(dataset, replacement=True, num_samples=batch_size * (batches + warmup)))
    if per_item == "clips":
        dataset, indices = SeededDataset(dataset), [(i, random.randrange(SEED_RANGE)) for i in indices]
    loader = make_loader(dataset, indices, batch_size, workers=workers, drop_last=False)
    iterator = iter(loader)
    count = lambda batch: len(batch["video"]) if per_item == "clips" else len(batch["label"])  # noqa: E731
    for _ in range(warmup):
        batch_inputs(next(iterator))
    pids = [worker.pid for worker in iterator._workers]  # the benchmark reads the DataLoader's own workers
    wait_until_idle(pids)
    prefetched = min(batches, loader.prefetch_factor * workers)
    worker_cpu, main_cpu, wall = total_cpu_seconds(pids), time.process_time(), time.perf_counter()
    delivered, produced, normalize_cpu = 0, 0, 0.0
    for position, batch in enumerate(iterator):
        touch_pages(batch["video"])  # receiving: the first read of the shared memory (counted)
        start = time.thread_time()
        batch_inputs(batch)  # the consumer's share: uint8 -> normalised float (not counted)
        normalize_cpu += time.thread_time() - start
        delivered += count(batch)
        produced += count(batch) if position >= prefetched else 0
    wall = time.perf_counter() - wall
    main_cpu = time.process_time() - main_cpu - normalize_cpu
    worker_cpu = total_cpu_seconds(pids) - worker_cpu
    del iterator, loader
    return {
        "loader": Cost(1000 * (worker_cpu / produced + main_cpu / delivered), delivered / wall),
        "workers": Cost(1000 * worker_cpu / produced, 0.0),
        "main": Cost(1000 * main_cpu / delivered, 0.0),
        "normalize": Cost(1000 * normalize_cpu / delivered, 0.0),
    }


def stacking_cost(shared: bool, reuse: bool, batches: int = 20) -> float:
    """CPU ms per batch of stacking 8 uint8 16x224x224 clips into a batch tensor: into fresh
    shared memory (what a DataLoader worker does per batch), into one shared buffer reused,
    or into fresh private memory."""
    clips = [torch.randint(0, 255, (3, NUM_FRAMES, CROP, CROP), dtype=torch.uint8) for _ in range(CLIPS_PER_BATCH)]
    shape, numel = (CLIPS_PER_BATCH, *clips[0].shape), CLIPS_PER_BATCH * clips[0].numel()

    def buffer() -> torch.Tensor:
        if not shared:
            return torch.empty(shape, dtype=torch.uint8)
        return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(numel)).view(shape)

    kept = buffer()
    torch.stack(clips, out=buffer())
    start = time.thread_time()
    for _ in range(batches):
        torch.stack(clips, out=kept if reuse else buffer())
    return 1000 * (time.thread_time() - start) / batches


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
        "from benchmarks.data_throughput import make_cfg, loader_cost; from common.data import build_dataset;"
        f"ds = build_dataset(make_cfg({data_dir!r}), {mode!r});"
        f"loader_cost(ds, workers=1, batch_size={batch_size}, batches=4, per_item={'clips' if mode == 'pretrain' else 'videos'!r});"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def parse_args(argv: Sequence[str] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="K400-style folder (train.csv, test.csv); default: generated 320x240 clips")
    parser.add_argument("--compare", help="a second K400-style folder (e.g. the --data folder prepared by "
                        "tools/prepare_videos.py) measured the same way; its ratios to --data are reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clips", type=int, default=96, help="clips per bare-decoder measurement")
    parser.add_argument("--batches", type=int, default=16, help=f"timed batches ({CLIPS_PER_BATCH} clips) per loader measurement")
    parser.add_argument("--test-videos", type=int, default=8, help="timed videos per multi-view measurement")
    parser.add_argument("--skip-720p", action="store_true", help="skip the 720p measurements (prepared copy, worker memory)")
    return parser.parse_args(argv)


def generate(root: str, height: int, width: int, clips_per_class) -> str:
    return str(make_synthetic_video_dataset(root, num_classes=4, clips_per_class=clips_per_class, num_frames=96,
                                            height=height, width=width, formats=("kinetics",))["kinetics"])


class Report:
    """Collects figures; prints each as it comes."""

    def __init__(self) -> None:
        self.figures: Dict[str, float] = {}

    def __call__(self, key: str, value: float) -> None:
        self.figures[key] = round(value, 3)
        print(f"{key}: {value:.3f}", flush=True)

    def cost(self, prefix: str, cost: Cost, unit: str) -> None:
        self(f"{prefix}_cpu_ms_per_{unit}", cost.cpu_ms)
        self(f"{prefix}_{unit}s_per_s", cost.per_s)

    def loader(self, name: str, costs: Dict[str, Cost]) -> None:
        """A pretraining loader's cost, its parts, and the normalisation (not counted)."""
        self.cost(name, costs["loader"], "clip")
        self(f"{name}_workers_cpu_ms_per_clip", costs["workers"].cpu_ms)
        self(f"{name}_main_cpu_ms_per_clip", costs["main"].cpu_ms)
        self(f"{name}_normalize_not_counted_cpu_ms_per_clip", costs["normalize"].cpu_ms)


def measure_sources(report: Report, data_dir: str, *, clips: int, batches: int, repeats: Sequence[int] = (1,), tag: str = "") -> None:
    """Bare decoding (``clips`` clips) and the pretraining loader (decord, 1 worker, each of
    ``repeats``, ``batches`` batches) on ``data_dir``."""
    paths = train_paths(data_dir)
    report.cost(f"bare_decode_decord{tag}", in_process_cost(bare_decord(paths), clips), "clip")
    report.cost(f"bare_decode_pyav{tag}", in_process_cost(bare_pyav(paths), clips), "clip")
    for repeat in repeats:
        dataset = build_dataset(make_cfg(data_dir, repeats=repeat), "pretrain")
        costs = loader_cost(dataset, workers=1, batch_size=CLIPS_PER_BATCH // repeat, batches=batches, per_item="clips")
        report.loader(f"pretrain_loader_decord_1w_repeat{repeat}{tag}", costs)


def measure_loaders(report: Report, data_dir: str, args: argparse.Namespace) -> None:
    for backend in ("decord", "pyav"):
        for workers in args.workers:
            for repeats in args.repeats if backend == "decord" else [1]:
                name = f"pretrain_loader_{backend}_{workers}w_repeat{repeats}"
                if f"{name}_cpu_ms_per_clip" in report.figures:
                    continue  # measured with the sources
                dataset = build_dataset(make_cfg(data_dir, backend=backend, repeats=repeats), "pretrain")
                costs = loader_cost(dataset, workers=workers, batch_size=CLIPS_PER_BATCH // repeats, batches=args.batches, per_item="clips")
                report.loader(name, costs)
    test = build_dataset(make_cfg(data_dir), "test")
    costs = loader_cost(test, workers=1, batch_size=1, batches=args.test_videos, per_item="videos")
    report.cost("multiview_loader_1w", costs["loader"], "video")
    naive = NaivePerViewDataset([v.path for v in test.videos], 5, 3)
    costs = loader_cost(naive, workers=1, batch_size=1, batches=max(4, args.test_videos // 2), per_item="videos")
    report.cost("per_view_decoding_loader_1w", costs["loader"], "video")


def ratios(report: Report, args: argparse.Namespace) -> None:
    f = report.figures
    bare = f["bare_decode_decord_cpu_ms_per_clip"]
    loader = "pretrain_loader_decord_{}w_repeat{}_cpu_ms_per_clip"
    workers = args.workers[0]
    if 1 in args.repeats:
        report("pretrain_loader_over_bare_cpu", f[loader.format(workers, 1)] / bare)
    for repeats in args.repeats:
        if repeats > 1:
            report(f"repeat{repeats}_over_bare_cpu", f[loader.format(workers, repeats)] / bare)
    report("pretrain_loader_pyav_over_bare_pyav_cpu", f[f"pretrain_loader_pyav_{workers}w_repeat1_cpu_ms_per_clip"] / f["bare_decode_pyav_cpu_ms_per_clip"])
    report("multiview_per_view_over_one_decode_cpu", f["per_view_decoding_loader_1w_cpu_ms_per_video"] / f["multiview_loader_1w_cpu_ms_per_video"])
    report("multiview_over_per_view_wall", f["multiview_loader_1w_videos_per_s"] / f["per_view_decoding_loader_1w_videos_per_s"])


def compare(report: Report, tag: str, reference: str = "", repeats: Sequence[int] = (1,)) -> None:
    """Ratios of the ``tag`` measurements to the reference ones (CPU per clip)."""
    names = ["bare_decode_decord", "bare_decode_pyav"] + [f"pretrain_loader_decord_1w_repeat{r}" for r in repeats]
    for name in names:
        report(f"{name}{tag}_over{reference or '_data'}_cpu", report.figures[f"{name}{tag}_cpu_ms_per_clip"] / report.figures[f"{name}{reference}_cpu_ms_per_clip"])


def main(argv: Sequence[str] = None) -> Dict[str, float]:
    configure_process()
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="data_throughput_")
    data_dir = args.data or generate(f"{tmp}/320x240", 240, 320, (6, 0, 2))
    report = Report()
    measure_sources(report, data_dir, clips=args.clips, batches=args.batches)
    measure_loaders(report, data_dir, args)
    ratios(report, args)
    if args.compare:
        measure_sources(report, args.compare, clips=args.clips, batches=args.batches, tag="_compare")
        compare(report, "_compare")
    if not args.skip_720p:
        hd_dir = generate(f"{tmp}/1280x720", 720, 1280, (4, 1, 1))
        prepared = prepare_videos(hd_dir, f"{tmp}/1280x720_prepared", short_side=320, workers=1, progress=False)
        # a 720p clip costs ~8x a 320x240 one: fewer of them
        hd = dict(clips=max(4, args.clips // 4), batches=max(4, args.batches // 2), repeats=args.repeats)
        measure_sources(report, hd_dir, tag="_720p", **hd)
        measure_sources(report, prepared.data_dir, tag="_720p_prepared320", **hd)
        compare(report, "_720p_prepared320", "_720p", args.repeats)
        report("worker_peak_rss_mb_720p_pretrain_loader_batch8", worker_peak_rss_mb(hd_dir, "pretrain", CLIPS_PER_BATCH))
        # one multi-view item is 15 clips
        report("worker_peak_rss_mb_720p_multiview_loader_batch1", worker_peak_rss_mb(hd_dir, "test", 1))
    # the transport's share: page faults of fresh shared memory
    report("stack_batch8_fresh_shared_memory_cpu_ms", stacking_cost(shared=True, reuse=False))
    report("stack_batch8_reused_shared_memory_cpu_ms", stacking_cost(shared=True, reuse=True))
    report("stack_batch8_fresh_private_memory_cpu_ms", stacking_cost(shared=False, reuse=False))
    report("main_peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report.figures))
    return report.figures


if __name__ == "__main__":
    main()
