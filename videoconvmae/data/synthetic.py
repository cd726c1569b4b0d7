"""A tiny generated video dataset whose classes differ only in motion.

Each clip shows a textured square sliding over a static textured background; the class is the
direction of motion (``num_classes`` directions evenly spread over 360 degrees), the speed and
start position are random. One frame cannot tell the class, a clip can. Written as real files:
H.264 ``.mp4`` with Kinetics-style list files, and VP9 ``.webm`` with Something-Something-v2
json annotations. Both carry PySlowFast's ``classids.json`` (class name -> id).
"""
import json
import math
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import av
import numpy as np
from tqdm import tqdm

from common.data.class_names import write_class_ids

KINETICS_SPLITS = ("train", "val", "test")
SSV2_SPLITS = {"train": "train.json", "val": "validation.json"}
SSV2_LABELS_FILE = "something-something-v2-labels.json"
CLASS_IDS_FILE = "classids.json"
CODECS = {".mp4": ("libx264", {"preset": "veryfast"}), ".webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8"})}


def direction_degrees(label: int, num_classes: int) -> int:
    """Motion direction of class ``label``, in whole degrees counter-clockwise from 'right'."""
    return round(360 * label / num_classes)


def _block_texture(rng: np.random.Generator, height: int, width: int, block: int, low: int, high: int) -> np.ndarray:
    """Random colour blocks of ``block`` pixels: (height, width, 3) uint8 in [low, high)."""
    coarse = rng.integers(low, high, size=(-(-height // block), -(-width // block), 3), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]


def _smooth_texture(rng: np.random.Generator, height: int, width: int, cells: int, low: int, high: int) -> np.ndarray:
    """A few random colours (a grid of ``cells`` rows) blended bilinearly: (height, width, 3) uint8."""
    coarse = rng.integers(low, high, size=(cells, -(-cells * width // height), 3)).astype(np.float64)
    rows = np.linspace(0, coarse.shape[0] - 1, height)
    cols = np.linspace(0, coarse.shape[1] - 1, width)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, coarse.shape[0] - 1), np.minimum(c0 + 1, coarse.shape[1] - 1)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c1] * fc
    bottom = coarse[r1][:, c0] * (1 - fc) + coarse[r1][:, c1] * fc
    return np.round(top * (1 - fr) + bottom * fr).astype(np.uint8)


BACKGROUNDS = ("blocks", "smooth")
SQUARES = ("textured", "plain")


def _check_style(background: str, square: str, square_size: float) -> None:
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {background!r}")
    if square not in SQUARES:
        raise ValueError(f"square must be one of {SQUARES}, got {square!r}")
    if not 0 < square_size <= 1:
        raise ValueError(f"square_size is the square's side as a fraction of the frame height, in (0, 1]; "
                         f"got {square_size!r}")


def render_motion_clip(
    *, label: int, num_classes: int, num_frames: int, height: int, width: int, rng: np.random.Generator,
    background: str = "blocks", square: str = "textured", square_size: float = 0.25,
) -> np.ndarray:
    """Frames (num_frames, height, width, 3) uint8 of a square moving in the class direction.

    The square wraps around the frame edges, so it never leaves the picture. ``background``:
    "blocks" (fine random colour blocks) or "smooth" (a dim, low-contrast blend of a few colours, which a
    masked autoencoder can fill in from the visible parts). ``square``: "textured" (bright random colour
    blocks) or "plain" (one bright colour, which a masked autoencoder can extend from a visible corner,
    so its pictures show the square). ``square_size``: the side as a fraction of ``height``.
    """
    _check_style(background, square, square_size)
    if background == "blocks":
        scene = _block_texture(rng, height, width, max(2, height // 24), 0, 160)
    else:
        scene = _smooth_texture(rng, height, width, 3, 16, 72)
    side = max(4, round(height * square_size))
    block = max(1, side // 4) if square == "textured" else side  # a plain square is one block
    square_pixels = _block_texture(rng, side, side, block, 120, 256)
    angle = math.radians(direction_degrees(label, num_classes))
    speed = width * rng.uniform(0.006, 0.012)
    start_x, start_y = rng.uniform(0, width), rng.uniform(0, height)
    frames = np.repeat(scene[None], num_frames, axis=0)
    for t in range(num_frames):
        x = round(start_x + t * speed * math.cos(angle))
        y = round(start_y - t * speed * math.sin(angle))  # image rows grow downwards
        rows = (y + np.arange(side)) % height
        cols = (x + np.arange(side)) % width
        frames[t][np.ix_(rows, cols)] = square_pixels
    return frames


def write_video(path: Path, frames: np.ndarray, *, fps: int) -> None:
    """Encodes frames (T, H, W, 3) uint8 to ``path`` (.mp4: H.264, .webm: VP9) with PyAV."""
    codec, options = CODECS[path.suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _clips(split_sizes: Dict[str, int], num_classes: int) -> Iterator[Tuple[str, int, int]]:
    """(split, label, clip number) for ``split_sizes[split]`` clips per class, numbered globally."""
    number = 0
    for split, per_class in split_sizes.items():
        for label in range(num_classes):
            for _ in range(per_class):
                yield split, label, number
                number += 1


def _template(label: int, num_classes: int) -> str:
    return f"Moving [something] towards {direction_degrees(label, num_classes)} degrees"


def class_name(label: int, num_classes: int, fmt: str) -> str:
    """The name of class ``label``: its folder name (kinetics) or its SSV2 label template."""
    if fmt == "kinetics":
        return f"direction_{direction_degrees(label, num_classes):03d}"
    return _template(label, num_classes).replace("[", "").replace("]", "")


def _write_ssv2_annotations(folder: Path, entries: Dict[str, List[dict]], num_classes: int) -> None:
    """Writes the labels json (template without brackets -> id string) and one json per split."""
    labels = {class_name(k, num_classes, "ssv2"): str(k) for k in range(num_classes)}
    (folder / SSV2_LABELS_FILE).write_text(json.dumps(labels, indent=1))
    for split, file_name in SSV2_SPLITS.items():
        (folder / file_name).write_text(json.dumps(entries[split], indent=1))


def make_synthetic_video_dataset(
    root: str,
    *,
    num_classes: int = 4,
    clips_per_class: Sequence[int] = (6, 2, 2),
    num_frames: int = 40,
    height: int = 240,
    width: int = 320,
    fps: int = 30,
    seed: int = 0,
    formats: Sequence[str] = ("kinetics", "ssv2"),
    progress: bool = False,
    background: str = "blocks",
    square: str = "textured",
    square_size: float = 0.25,
) -> Dict[str, Path]:
    """Writes the motion dataset under ``root`` and returns ``{format: folder}``.

    ``kinetics``: ``root/kinetics/<split>/<class>/<n>.mp4`` with ``train.csv``, ``val.csv``,
    ``test.csv`` ("path label", paths relative to the folder); usable as folder-per-class too.
    ``ssv2``: ``root/ssv2/<n>.webm`` with ``something-something-v2-labels.json``,
    ``train.json`` and ``validation.json`` (no test split, as in SSV2: test uses validation).
    ``clips_per_class`` gives the train, val, test counts per class; ``background``, ``square`` and
    ``square_size`` are those of ``render_motion_clip``. Same seed, same files.
    """
    _check_style(background, square, square_size)  # before any file is written
    for fmt in formats:
        if fmt not in ("kinetics", "ssv2"):
            raise ValueError(f"unknown format {fmt!r}; use 'kinetics' and/or 'ssv2'")
    style = dict(num_classes=num_classes, clips_per_class=clips_per_class, num_frames=num_frames, height=height,
                 width=width, fps=fps, seed=seed, progress=progress, background=background, square=square,
                 square_size=square_size)
    return {fmt: write_motion_dataset(Path(root) / fmt, fmt, **style) for fmt in formats}


def write_motion_dataset(folder: Path, fmt: str, *, num_classes: int, clips_per_class: Sequence[int],
                         num_frames: int, height: int, width: int, fps: int, seed: int, progress: bool,
                         background: str, square: str, square_size: float) -> Path:
    """One format (``kinetics`` or ``ssv2``, see ``make_synthetic_video_dataset``) of the motion
    dataset, written into ``folder``; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    splits = KINETICS_SPLITS if fmt == "kinetics" else tuple(SSV2_SPLITS)
    sizes = dict(zip(splits, clips_per_class))
    lists: Dict[str, List] = {split: [] for split in splits}
    clips = list(_clips(sizes, num_classes))
    for split, label, number in tqdm(clips, desc=fmt, disable=not progress):
        rng = np.random.default_rng([seed, number])
        frames = render_motion_clip(
            label=label, num_classes=num_classes, num_frames=num_frames, height=height, width=width, rng=rng,
            background=background, square=square, square_size=square_size,
        )
        if fmt == "kinetics":
            relative = f"{split}/{class_name(label, num_classes, fmt)}/{number:05d}.mp4"
            write_video(folder / relative, frames, fps=fps)
            lists[split].append(f"{relative} {label}")
        else:
            write_video(folder / f"{number}.webm", frames, fps=fps)
            template = _template(label, num_classes)
            lists[split].append(
                {"id": str(number), "label": template.replace("[something]", "a square").lower(),
                 "template": template, "placeholders": ["a square"]}
            )
    if fmt == "kinetics":
        for split in splits:
            (folder / f"{split}.csv").write_text("\n".join(lists[split]) + "\n")
    else:
        _write_ssv2_annotations(folder, lists, num_classes)
    write_class_ids(str(folder / CLASS_IDS_FILE), {class_name(k, num_classes, fmt): k for k in range(num_classes)})
    return folder
