"""Preparing a video dataset for cheap loading: every video re-encoded with PyAV to H.264 at a
smaller size, and new annotation lists pointing at the copies.

Decoding dominates the CPU cost of a training clip and grows with the pixels: a 720p source
costs several times a copy whose short side is 320 (as Kinetics is usually prepared for
VideoMAE and PySlowFast). The copies have even dimensions (yuv420p), a keyframe every ``gop``
frames so a clip's seek decodes few frames before the first wanted one, no audio, and come out
upright (a display-matrix rotation is applied to the pixels, which decord would ignore).

Inputs: a "path label" (or path-only) list (its name or ``split`` gives the split), a folder with
``train``/``val``/``test`` lists or class folders (numbered as ``common.data.sources.split_class_names``
says, as the training datasets number them), a plain folder of videos without split lists (searched
recursively; first-level class folders give labels, else the videos are unlabeled, for pretraining), or
the official Kinetics annotation CSVs (``label,youtube_id,time_start,time_end,split``; rows without a
label, as in the test CSV, are unlabeled) with the videos under a folder, named as the common downloaders
name them (``{youtube_id}_{time_start:06d}_{time_end:06d}.mp4``, in class folders or flat). Where the
source has labelled train videos and no val or test split, seeded shares of train can be held out for
them (``split_off``). A destination that is the source, where an output would replace a source, list or
CSV, or inside a split folder of the source (a rerun would read the copies as sources) is refused
before anything is written or deleted (``check_destination``).

Outputs in ``dst``: one ``.mp4`` per source (``output_name``: the source's path under the
list's folder, percent-encoded, so that no two sources share an output and a source's output
never depends on the others), ``train.csv``/``val.csv``/``test.csv`` ("path label", paths
relative to ``dst``), ``classids.json`` when class names are known, ``prepare_report.csv``
(source, output, status, reason) with every video: ``converted``, ``exists`` (done by an earlier
run), ``failed`` (with the reason) or ``missing``, and ``manifest.json`` (``common.manifest``:
the encode settings and the source, compared on a rerun; the split settings, recorded; each output's
source; the code version). A broken source is listed, never fatal. Each output is written under an engine temp name in its folder, verified
(it decodes, with the expected frame count and size) and only then renamed, so a killed run
leaves no half file under a final name; the next run removes its temp files. A rerun with the
same encode settings converts what is missing (new or failed sources) and keeps the rest, and
rewrites the lists (so another split, seed or ``unlabeled`` only rewrites them); other encode
settings are refused unless ``overwrite``. One run at a time per ``dst`` (a lock); the pool's
workers die with the main process.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote

import av
import numpy as np
from tqdm import tqdm

from common.data.class_names import CLASS_IDS_FILE, class_ids_file, class_ids_for, read_class_ids, write_class_ids
from common.data.lists import NO_LABEL, format_list_line
from common.data.sources import SPLITS, is_split_layout, scan_folder, split_class_names
from common.errors import DataNotFoundError, UserError
from common.files import atomic_write_text, temp_path
from common.manifest import MANIFEST_FILE, Manifest, OutputFolder
from common.process_settings import die_with_parent, worker_context

from .annotations import VIDEO_EXTENSIONS, AnnotationError, read_class_folders, read_path_label_list
from .decoders import video_stream

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
REPORT_FILE = "prepare_report.csv"
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_REQUIRED = KINETICS_COLUMNS[1:]  # the official test CSV has no label column
OUTSIDE_ROOT = "%2F"  # the folder of outputs whose source lies outside the list's folder (an encoded "/")


@dataclass(frozen=True)
class EncodeSettings:
    """How outputs are encoded: short side (never upscaled), frame rate (None: every source
    frame, at the source's average rate), keyframe interval in frames, x264 crf and preset."""

    short_side: int = 320
    fps: Optional[float] = None
    gop: int = 16
    crf: int = 23
    preset: str = "veryfast"


@dataclass(frozen=True)
class Job:
    """One video to prepare: ``output`` is relative to the destination folder."""

    source: str
    output: str
    label: int
    split: str


@dataclass(frozen=True)
class Outcome:
    """What became of a job: status ``converted``, ``exists``, ``failed`` or ``missing``."""

    job: Job
    status: str
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.status in ("converted", "exists")


@dataclass
class PreparedDataset:
    """The prepared folder, its report and the outcome of every job."""

    data_dir: str
    report: str
    outcomes: List[Outcome]

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)


# ---------------------------------------------------------------- sizes and orientation


def output_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
    """(width, height) with the short side ``short_side`` (a smaller video keeps its size), the
    aspect ratio kept, both rounded down to even numbers (at least 2)."""
    scale = min(1.0, short_side / min(width, height))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def upright(frame: av.VideoFrame) -> av.VideoFrame:
    """The frame turned as its display matrix says (``rotation``: degrees counter-clockwise,
    multiples of 90)."""
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    if quarter_turns == 0:
        return frame
    pixels = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), k=quarter_turns))
    turned = av.VideoFrame.from_ndarray(pixels, format="rgb24")
    turned.pts, turned.time_base = frame.pts, frame.time_base
    return turned


def frame_times(frames: Iterator[av.VideoFrame], fallback_rate: Fraction) -> Iterator[Tuple[av.VideoFrame, float]]:
    """Each frame with its presentation time in seconds (its position at ``fallback_rate`` when
    it has no timestamp)."""
    for number, frame in enumerate(frames):
        yield frame, float(frame.time) if frame.time is not None else number / float(fallback_rate)


def resample(timed: Iterator[Tuple[av.VideoFrame, float]], fps: Optional[float], last_duration: float) -> Iterator[av.VideoFrame]:
    """The frames to write: all of them (``fps`` None), or at each tick k / ``fps`` the latest
    frame shown at that time, up to the end of the last frame (``last_duration`` seconds on)."""
    if fps is None:
        for frame, _ in timed:
            yield frame
        return
    tick, previous, start = 0, None, None
    for frame, when in timed:
        start = when if start is None else start
        while previous is not None and start + tick / fps < when:
            yield previous
            tick += 1
        previous = frame
    if previous is not None:
        end = when + last_duration
        while start + tick / fps < end - 1e-9:
            yield previous
            tick += 1


# ---------------------------------------------------------------- one video


def source_rate(stream: av.video.stream.VideoStream) -> Fraction:
    """The source's average frame rate (guessed when the header has none; 30 at worst)."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate).limit_denominator(1001 * 1000)
    return Fraction(30)


def encode(source: str, target: str, settings: EncodeSettings) -> Tuple[int, int, int]:
    """Re-encodes the video stream of ``source`` into ``target`` (mp4, H.264, yuv420p, no
    audio); returns (frames written, width, height). Raises on an undecodable source."""
    with av.open(source) as inp:
        stream = video_stream(inp)
        stream.thread_type = "AUTO"
        rate = source_rate(stream)
        out_rate = Fraction(settings.fps).limit_denominator(1001) if settings.fps else rate
        written, size = 0, None
        with av.open(target, "w", format="mp4") as out:
            encoder = None
            frames = (upright(frame) for frame in inp.decode(stream))
            for frame in resample(frame_times(frames, rate), settings.fps, 1 / float(rate)):
                if encoder is None:
                    size = output_size(frame.width, frame.height, settings.short_side)
                    encoder = out.add_stream("libx264", rate=out_rate)
                    encoder.width, encoder.height, encoder.pix_fmt = size[0], size[1], "yuv420p"
                    encoder.codec_context.gop_size = settings.gop
                    encoder.options = {"crf": str(settings.crf), "preset": settings.preset, "keyint_min": str(settings.gop)}
                scaled = frame.reformat(width=size[0], height=size[1], format="yuv420p", interpolation="BICUBIC")
                scaled.pts, scaled.time_base = written, 1 / out_rate
                for packet in encoder.encode(scaled):
                    out.mux(packet)
                written += 1
            if encoder is None:
                raise ValueError("no decodable video frames")
            for packet in encoder.encode():
                out.mux(packet)
    return written, size[0], size[1]


def verify(path: str, frames: int, width: int, height: int) -> None:
    """Raises ValueError unless ``path`` decodes to ``frames`` frames of ``width`` x ``height``."""
    count = 0
    with av.open(path) as container:
        stream = video_stream(container)
        for frame in container.decode(stream):
            if (frame.width, frame.height) != (width, height):
                raise ValueError(f"output frame {count} is {frame.width}x{frame.height}, expected {width}x{height}")
            count += 1
    if count != frames:
        raise ValueError(f"output decodes to {count} frames, {frames} were written")


def prepare_video(job: Job, dst: str, settings: EncodeSettings) -> Outcome:
    """Converts one video unless its output exists; the output appears under its final name
    only once verified. Never raises for a bad source: the outcome says why it failed."""
    output = os.path.join(dst, job.output)
    if os.path.exists(output):
        return Outcome(job, "exists")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    tmp = str(temp_path(output))
    try:
        frames, width, height = encode(job.source, tmp, settings)
        verify(tmp, frames, width, height)
        os.replace(tmp, output)
    except Exception as error:  # decoders raise many types: every one is a failed source
        lines = str(error).strip().splitlines()
        return Outcome(job, "failed", f"{type(error).__name__}: {lines[0][:300] if lines else ''}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return Outcome(job, "converted")


# ---------------------------------------------------------------- inputs


def split_name(name: str) -> str:
    """"train", "val" or "test" for a split or list-file name (``validate`` -> ``val``);
    ValueError otherwise."""
    key = name.lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {name!r}; expected one of {sorted(SPLIT_ALIASES)}")
    return SPLIT_ALIASES[key]


def safe_name(name: str) -> str:
    """A class name usable as a folder and in a "path label" line (no spaces or commas)."""
    return re.sub(r"[^\w\-.()]+", "_", name).strip("_") or "_"


def encoded(name: str) -> str:
    """``name`` percent-encoded except ASCII letters, digits and ``_-~()``, dots included: no
    space, comma or quote (the lists stay "path label"), never hidden or taken for a temp file,
    and one text per name (``%`` itself is encoded)."""
    return quote(name, safe="()").replace(".", "%2E")


def encoded_file_name(name: str) -> str:
    """The output file of a source file: ``clip.mp4`` -> ``clip.mp4``, ``clip.webm`` ->
    ``clip.webm.mp4``, ``x y.mp4`` -> ``x%20y.mp4``: the only literal dots are those of the
    extensions, so no two source names give one output."""
    stem, extension = os.path.splitext(name)
    if extension == ".mp4":
        return f"{encoded(stem)}.mp4"
    return f"{encoded(stem)}.{encoded(extension[1:])}.mp4"


def output_name(source: str, root: str, split: str) -> str:
    """Where the copy of ``source`` goes, relative to the destination: its path under ``root``,
    each part ``encoded`` and the file name by ``encoded_file_name``; a source outside ``root``
    goes to ``<split>/%2F/<its absolute path, encoded>``. Distinct sources never share an output,
    and a source's output depends on nothing else: it stays the same when sources come or go."""
    relative = os.path.relpath(source, root)
    prefix: List[str] = []
    if relative == ".." or relative.startswith(".." + os.sep):  # encoding never makes a literal %2F
        prefix, relative = [split, OUTSIDE_ROOT], os.path.abspath(source).lstrip(os.sep)
    *folders, name = Path(relative).parts
    return os.path.join(*prefix, *map(encoded, folders), encoded_file_name(name))


def check_unique_outputs(jobs: Sequence[Job]) -> None:
    """UserError naming both sources if two would be written to one output (a source listed
    twice, e.g. in two splits, is fine: it is converted once)."""
    source_of: Dict[str, str] = {}
    for job in jobs:
        first = source_of.setdefault(job.output, job.source)
        if first != job.source:
            raise UserError(f"{first} and {job.source} would both be written to {job.output}: give them in "
                            "separate runs")


def list_split(list_file: str, split: str = "") -> str:
    """The split of a list file: ``split`` when given, else the list's name (``val.csv``,
    ``validate.txt``, ...); ``UserError`` naming the accepted names otherwise."""
    name = split or Path(list_file).stem
    try:
        return split_name(name)
    except ValueError:
        accepted = ", ".join(sorted(SPLIT_ALIASES))
        if split:
            raise UserError(f"--split {split}: expected one of {accepted}") from None
        raise UserError(f"{list_file}: cannot tell the split from the list's name {name!r} (accepted: {accepted}); "
                        f"pass --split train, val or test, or rename the list") from None


def jobs_from_source(src: str, *, unlabeled: bool = False, exclude: Sequence[str] = (),
                     split: str = "") -> Tuple[List[Job], Optional[Dict[str, int]]]:
    """Jobs from a list file (its split: ``list_split``), a folder with split lists or split folders,
    or a plain folder of videos (see ``jobs_from_plain_folder``); the class ids when class folders
    name the classes."""
    if os.path.isfile(src):
        split = list_split(src, split)
        return [Job(v.path, output_name(v.path, os.path.dirname(os.path.abspath(src)), split), v.label, split)
                for v in read_path_label_list(src, require_labels=False)], None
    if not os.path.isdir(src):
        raise DataNotFoundError(f"{src}: no such list file or folder")
    if split:
        raise UserError(f"--split {split}: only for a list file; {src} is a folder (its lists or split folders "
                        f"name the splits)")
    if is_split_layout(src):
        return jobs_from_splits(src)
    return jobs_from_plain_folder(src, unlabeled=unlabeled, exclude=exclude)


def jobs_from_splits(src: str) -> Tuple[List[Job], Optional[Dict[str, int]]]:
    """Jobs from ``src/<split>.csv`` lists (labels optional) or ``src/<split>/<class>/`` folders (the
    classes of every split numbered alike: ``split_class_names``, ``src/classids.json`` first)."""
    jobs: List[Job] = []
    class_ids = None
    for split in SPLITS:
        list_file, folder = os.path.join(src, f"{split}.csv"), os.path.join(src, split)
        if os.path.isfile(list_file):
            videos = read_path_label_list(list_file, require_labels=False)
        elif os.path.isdir(folder):
            classes, classes_from = split_class_names(src, split)
            videos = read_class_folders(folder, classes=classes, classes_from=classes_from)[0]
            class_ids = {name: index for index, name in enumerate(classes)}
        else:
            continue
        jobs += [Job(v.path, output_name(v.path, src, split), v.label, split) for v in videos]
    return jobs, class_ids


def plain_folder_class_ids(src: str, classes: Sequence[str]) -> Dict[str, int]:
    """The ids of a plain folder's class folders: ``src/classids.json`` when it exists (``UserError`` for
    a folder it does not name), else the sorted names."""
    path = class_ids_file("", src)
    if not path:
        return class_ids_for(classes)
    class_ids = read_class_ids(path)
    unknown = [name for name in classes if name not in class_ids]
    if unknown:
        raise UserError(f"{os.path.join(src, unknown[0])}: class folder {unknown[0]!r} is not named in {path}; "
                        f"add it there or move the folder")
    return class_ids


def jobs_from_plain_folder(src: str, *, unlabeled: bool,
                           exclude: Sequence[str]) -> Tuple[List[Job], Optional[Dict[str, int]]]:
    """Every video under ``src`` (recursively; hidden files and folders, other files and ``exclude``d
    folders skipped), all in the train split. When every video lies in a first-level sub-folder and
    there are at least two of them, those are class folders (ids from ``src/classids.json``, else in
    sorted name order), unless ``unlabeled``; otherwise the videos are unlabeled (lists for pretraining)."""
    scan = scan_folder(src, VIDEO_EXTENSIONS, kind="video", exclude=exclude)
    if not scan.files:
        raise DataNotFoundError(f"no videos under {src} (searched recursively for {', '.join(VIDEO_EXTENSIONS)}); "
                                f"{scan.skipped_text()}")
    logger.info("%s", scan.summary())
    relative = [Path(os.path.relpath(path, src)).parts for path in scan.files]
    classes = sorted({parts[0] for parts in relative}) if all(len(parts) > 1 for parts in relative) else []
    if unlabeled or len(classes) < 2:
        logger.info("%s: unlabeled videos (%s): lists for pretraining", src,
                    "as asked" if unlabeled else "not in two or more class folders")
        return [Job(path, output_name(path, src, "train"), NO_LABEL, "train") for path in scan.files], None
    class_ids = plain_folder_class_ids(src, classes)
    logger.info("%s: %d class folders (%s) give the labels; pass --unlabeled if they are not classes", src,
                len(classes), ", ".join(classes))
    return [Job(path, output_name(path, src, "train"), class_ids[parts[0]], "train")
            for path, parts in zip(scan.files, relative)], class_ids


def check_shares(val_share: float, test_share: float) -> None:
    """``UserError`` unless both shares are in [0, 1) and leave some videos to train."""
    if not (0 <= val_share < 1 and 0 <= test_share < 1 and val_share + test_share < 1):
        raise UserError(f"--val-share {val_share} and --test-share {test_share}: expected shares in [0, 1) whose sum "
                        f"is below 1 (some videos must stay in train)")


def check_shares_have_labels(jobs: Sequence[Job], val_share: float, test_share: float, src: str) -> None:
    """``UserError`` for shares of unlabeled train videos: val and test lists serve finetuning and
    testing, which need labels, and pretraining reads train only, so the held-out videos would be lost."""
    unlabeled = sum(job.split == "train" and job.label == NO_LABEL for job in jobs)
    if (val_share or test_share) and unlabeled:
        raise UserError(f"--val-share {val_share} / --test-share {test_share}: {unlabeled} train videos of {src} have "
                        f"no labels, and val/test lists serve finetuning and testing, which need labels (pretraining "
                        f"reads train only); leave the shares out, or give class folders or labelled lists")


def split_off(jobs: Sequence[Job], *, val_share: float, test_share: float, seed: int) -> List[Job]:
    """``jobs`` with shares of the train split moved to val and test: per class (labels), the
    videos are ordered by a hash of the seed and their output name (so the split depends on neither
    the listing order nor the process, and mostly keeps its choice when videos are added); the
    first ``round(share x count)`` (at least 1 for a share > 0) go to test, the next to val, at least
    one stays in train. ``UserError`` when the source has that split already."""
    shares = {"val": val_share, "test": test_share}
    for split, share in shares.items():
        if share and any(job.split == split for job in jobs):
            raise UserError(f"the source already has a {split} split; leave out --{split}-share (it holds out a "
                            f"share of train only where there is no {split} split)")
    if not (val_share or test_share):
        return list(jobs)
    moved: Dict[Job, str] = {}
    for label in sorted({job.label for job in jobs if job.split == "train"}):
        group = sorted((job for job in jobs if job.split == "train" and job.label == label),
                       key=lambda job: hashlib.sha256(f"{seed}:{job.output}".encode()).hexdigest())
        counts = held_out_counts(len(group), test_share, val_share)
        for job in group[:counts[0]]:
            moved[job] = "test"
        for job in group[counts[0]:counts[0] + counts[1]]:
            moved[job] = "val"
    out = [replace(job, split=moved.get(job, job.split)) for job in jobs]
    logger.info("held out %d videos for val and %d for test (shares %g and %g of each class, seed %d)",
                sum(s == "val" for s in moved.values()), sum(s == "test" for s in moved.values()), val_share,
                test_share, seed)
    return out


def held_out_counts(count: int, *shares: float) -> List[int]:
    """Videos held out of ``count`` for each share: ``round(share x count)``, at least 1 for a share
    above 0, reduced (last share first) so that at least one video stays."""
    taken = [max(1, round(share * count)) if share > 0 else 0 for share in shares]
    for i in reversed(range(len(taken))):
        taken[i] = max(0, min(taken[i], count - 1 - sum(taken[:i])))
    return taken


@dataclass(frozen=True)
class KineticsClip:
    """One row of an official Kinetics annotation CSV."""

    label: str
    youtube_id: str
    time_start: int
    time_end: int
    split: str

    @property
    def file_stem(self) -> str:
        """The downloaders' name without extension: ``{youtube_id}_{start:06d}_{end:06d}``."""
        return f"{self.youtube_id}_{self.time_start:06d}_{self.time_end:06d}"


def read_kinetics_csv(path: str) -> List[KineticsClip]:
    """Rows of an official Kinetics annotation CSV (header ``label,youtube_id,time_start,
    time_end,split``; no ``label`` column in the test CSV: its clips get label ""; extra columns such
    as ``is_cc`` ignored). ``AnnotationError`` naming the file (and line) of a bad row or a missing
    column, ``DataNotFoundError`` for a missing file."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = [column for column in KINETICS_REQUIRED if column not in (reader.fieldnames or [])]
            if missing:
                raise AnnotationError(f"{path}: missing column(s) {missing}; expected a header "
                                      f"{','.join(KINETICS_COLUMNS)} (label may be left out, as in the test CSV)")
            clips = []
            for row in reader:
                try:
                    clips.append(KineticsClip((row.get("label") or "").strip(), row["youtube_id"].strip(),
                                              int(float(row["time_start"])), int(float(row["time_end"])),
                                              split_name(row["split"].strip())))
                except (ValueError, AttributeError) as error:
                    raise AnnotationError(f"{path}, line {reader.line_num}: {error}: {row}") from None
    except FileNotFoundError:
        raise DataNotFoundError(f"--kinetics-csv {path} does not exist") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not UTF-8 text ({error.reason}); expected an official Kinetics CSV") from None
    return clips


def index_videos(root: str, *, exclude: Sequence[str] = ()) -> Tuple[Dict[str, str], Dict[str, str]]:
    """File stem -> path of every video under ``root`` (class folders or flat; ``exclude``d folders,
    such as the destination, not searched: ``common.data.sources.scan_folder``), and file stem -> why
    a video file there was skipped (empty, a broken link)."""
    scan = scan_folder(root, VIDEO_EXTENSIONS, kind="video", exclude=exclude)
    found: Dict[str, str] = {}
    for path in scan.files:
        found.setdefault(Path(path).stem, path)
    skipped = {Path(relative).stem: f"{os.path.join(root, relative)}: {reason}" for relative, reason in scan.skipped
               if Path(relative).suffix.lower() in VIDEO_EXTENSIONS}
    return found, skipped


def jobs_from_kinetics(csv_files: Sequence[str], video_root: str, *,
                       exclude: Sequence[str] = ()) -> Tuple[List[Job], List[Outcome], Dict[str, int]]:
    """Jobs for the clips of official Kinetics CSVs found under ``video_root`` (not in ``exclude``d
    folders), labelled by the class ids (sorted class names, as PySlowFast numbers them; rows without
    a label are unlabeled), with the ``missing`` (or ``failed``: an empty file) outcomes of the others."""
    if not os.path.isdir(video_root):
        raise DataNotFoundError(f"{video_root}: no such folder (with --kinetics-csv, SRC is the folder of the videos)")
    clips = [clip for path in csv_files for clip in read_kinetics_csv(path)]
    class_ids = class_ids_for(clip.label for clip in clips if clip.label)
    found, skipped = index_videos(video_root, exclude=exclude)
    jobs, missing = [], []
    for clip in clips:
        output = os.path.join(clip.split, safe_name(clip.label or "unlabelled"), f"{clip.file_stem}.mp4")
        job = Job(found.get(clip.file_stem, os.path.join(video_root, f"{clip.file_stem}.mp4")), output,
                  class_ids.get(clip.label, NO_LABEL), clip.split)
        if clip.file_stem in found:
            jobs.append(job)
        elif clip.file_stem in skipped:
            missing.append(Outcome(job, "failed", skipped[clip.file_stem]))
        else:
            missing.append(Outcome(job, "missing", f"no video named {clip.file_stem}.* under {video_root}"))
    return jobs, missing, class_ids


# ---------------------------------------------------------------- the whole dataset


def check_destination(src: str, dst: str, jobs: Sequence[Job], written: Iterable[str], *,
                      inputs: Sequence[str], kinetics: bool) -> None:
    """``UserError``, before anything is written or deleted, when the run would write over what it
    reads or where a rerun would read: ``dst`` is the source folder (its lists would turn it into a
    split layout of the copies), ``dst`` is in a split folder of ``src`` (``train/``, ...: a rerun
    would read the copies as sources), or a file it writes (``written``, relative to ``dst``: the
    outputs, lists, report and manifest) is a source video or one of the ``inputs`` (the list, the
    Kinetics CSVs) -- which ``--overwrite`` would delete."""
    here = os.path.realpath(dst)
    if os.path.isdir(src):
        if os.path.realpath(src) == here:
            raise UserError(f"DST {dst} is the source folder: the copies and lists would replace or mix with the "
                            f"sources (a rerun would read the copies as sources); choose another DST")
        for split in SPLITS if not kinetics else ():
            folder = os.path.realpath(os.path.join(src, split))
            if here == folder or here.startswith(folder + os.sep):
                raise UserError(f"DST {dst} is in {os.path.join(src, split)}, a split folder of the source: a rerun "
                                f"would read the copies as sources; choose a DST outside it")
    read = {os.path.realpath(path): path for path in [*inputs, *(job.source for job in jobs)]}
    for name in written:
        target = os.path.join(dst, name)
        source = read.get(os.path.realpath(target))
        if source is not None:
            raise UserError(f"{target} would replace the source {source}: choose a DST that is not the folder of "
                            f"the sources or of the list")


def run_jobs(jobs: Sequence[Job], dst: str, settings: EncodeSettings, *, workers: int, progress: bool) -> List[Outcome]:
    """Prepares ``jobs`` in ``workers`` processes (1: in this one), with a progress bar and ETA; jobs
    sharing an output (one source in two lists) convert it once. The pool's workers are children of
    this process (``worker_context``) and end when it is killed (``die_with_parent``)."""
    distinct = list({job.output: job for job in jobs}.values())
    with tqdm(total=len(distinct), unit="video", disable=not progress, smoothing=0.1) as bar:
        if workers <= 1:
            done = [_progress(prepare_video(job, dst, settings), bar) for job in distinct]
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=worker_context(), initializer=die_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                results = pool.map(prepare_video, distinct, [dst] * len(distinct), [settings] * len(distinct),
                                   chunksize=1)
                done = [_progress(outcome, bar) for outcome in results]
    by_output = {outcome.job.output: outcome for outcome in done}
    return [replace(by_output[job.output], job=job) for job in jobs]


def _progress(outcome: Outcome, bar: tqdm) -> Outcome:
    bar.update()
    if outcome.status == "failed":
        logger.warning("%s: %s", outcome.job.source, outcome.reason)
    return outcome


def prepare_manifest(src: str, kinetics_csvs: Sequence[str], settings: EncodeSettings, splits: Dict[str, Any],
                     jobs: Sequence[Job], class_ids: Optional[Dict[str, int]]) -> Manifest:
    """What makes a prepared folder: the encode settings and the source (compared on a rerun: they
    decide whether the outputs can be reused), the split settings (recorded in ``about``: another
    split only rewrites the lists), and every output with the source it is converted from (an output
    is reused only from that source), the lists and the report."""
    return Manifest(tool="prepare_videos",
                    settings={**asdict(settings), "src": os.path.abspath(src),
                              "kinetics_csvs": [os.path.abspath(path) for path in kinetics_csvs]},
                    outputs={**{job.output: os.path.abspath(job.source) for job in jobs},
                             **{name: "" for name in summary_files(jobs, class_ids)}},
                    about={"splits": splits})


def summary_files(jobs: Sequence[Job], class_ids: Optional[Dict[str, int]]) -> List[str]:
    """The lists, ``classids.json`` and the report that a run with these jobs may write."""
    lists = [f"{split}.csv" for split in SPLITS if any(job.split == split for job in jobs)]
    return [*lists, *([CLASS_IDS_FILE] if class_ids else []), REPORT_FILE]


def prepare_summary(prepared: PreparedDataset) -> Dict[str, Any]:
    """Counts of each status and the failed or missing sources with their reasons."""
    counts = {status: prepared.count(status) for status in ("converted", "exists", "failed", "missing")}
    return {**counts, "failed_sources": {o.job.source: o.reason for o in prepared.outcomes if not o.usable}}


def write_lists(dst: str, outcomes: Sequence[Outcome]) -> List[str]:
    """``<split>.csv`` ("path label", paths relative to ``dst``) for each split with a usable
    video; returns the files written."""
    written = []
    for split in SPLITS:
        lines = [format_list_line(o.job.output, o.job.label) for o in outcomes if o.usable and o.job.split == split]
        if lines:
            path = os.path.join(dst, f"{split}.csv")
            atomic_write_text(path, "".join(lines))
            written.append(path)
    return written


def remove_stale_lists(dst: str, saved: Optional[Manifest], written: Sequence[str]) -> None:
    """Deletes the lists and ``classids.json`` an earlier run wrote (its manifest names them) that this
    run did not write (another split, ``unlabeled``, a split whose videos all failed): a stale
    ``val.csv`` would hold videos that are now in train."""
    names = [f"{split}.csv" for split in SPLITS] + [CLASS_IDS_FILE]
    kept = {os.path.basename(path) for path in written}
    for name in names:
        path = os.path.join(dst, name)
        if saved is not None and name in saved.outputs and name not in kept and os.path.isfile(path):
            os.remove(path)
            logger.info("removed %s, written by an earlier run with other split settings", path)


def write_report(path: str, outcomes: Sequence[Outcome]) -> None:
    """``source,output,status,reason`` for every video."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["source", "output", "status", "reason"])
    for o in outcomes:
        writer.writerow([o.job.source, o.job.output, o.status, o.reason])
    atomic_write_text(path, text.getvalue())


def read_report(path: str) -> List[Dict[str, str]]:
    """The rows of a ``prepare_report.csv`` as dicts."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def check_encode_settings(short_side: int, gop: int, fps: Optional[float]) -> None:
    """``UserError`` naming the option with a value that cannot be encoded."""
    for option, value, ok, expected in (("--short-side", short_side, short_side >= 2, "2 or more"),
                                        ("--gop", gop, gop >= 1, "1 or more"),
                                        ("--fps", fps, fps is None or fps > 0, "above 0")):
        if not ok:
            raise UserError(f"{option} {value}: expected {expected}")


def prepare_videos(
    src: str,
    dst: str,
    *,
    short_side: int = 320,
    fps: Optional[float] = None,
    gop: int = 16,
    crf: int = 23,
    preset: str = "veryfast",
    workers: int = 1,
    kinetics_csvs: Sequence[str] = (),
    progress: bool = True,
    val_share: float = 0.0,
    test_share: float = 0.0,
    split_seed: int = 0,
    unlabeled: bool = False,
    split: str = "",
    overwrite: bool = False,
) -> PreparedDataset:
    """Prepares the dataset ``src`` (lists / folders / a plain folder of videos, or with
    ``kinetics_csvs`` the video folder of official Kinetics CSVs) into ``dst``, holding out
    ``val_share`` and ``test_share`` of train where the source has no such split (``split_off``,
    seeded by ``split_seed``); ``unlabeled``: class folders of a plain folder are not taken for
    classes; ``split``: the split of a list file whose name does not say it. See the module doc.
    ``overwrite``: start over, deleting the files an earlier run with other encode settings wrote
    (those its manifest names). Returns the outcomes."""
    check_encode_settings(short_side, gop, fps)
    check_shares(val_share, test_share)
    settings = EncodeSettings(short_side=short_side, fps=fps, gop=gop, crf=crf, preset=preset)
    if kinetics_csvs:
        jobs, unusable, class_ids = jobs_from_kinetics(kinetics_csvs, src, exclude=[dst])
    else:
        (jobs, class_ids), unusable = jobs_from_source(src, unlabeled=unlabeled, exclude=[dst], split=split), []
    check_shares_have_labels(jobs, val_share, test_share, src)
    jobs = split_off(jobs, val_share=val_share, test_share=test_share, seed=split_seed)
    every_job = jobs + [outcome.job for outcome in unusable]
    check_unique_outputs(every_job)
    splits = {"val_share": val_share, "test_share": test_share, "split_seed": split_seed, "unlabeled": unlabeled}
    manifest = prepare_manifest(src, kinetics_csvs, settings, splits, every_job, class_ids)
    check_destination(src, dst, every_job, [*manifest.outputs, MANIFEST_FILE], kinetics=bool(kinetics_csvs),
                      inputs=[*([src] if os.path.isfile(src) else []), *kinetics_csvs])
    with OutputFolder(dst) as out:
        out.start(manifest, overwrite=overwrite)
        started = time.monotonic()
        outcomes = run_jobs(jobs, dst, settings, workers=workers, progress=progress) + unusable
        written = write_lists(dst, outcomes)
        if class_ids:
            write_class_ids(os.path.join(dst, CLASS_IDS_FILE), class_ids)
            written.append(os.path.join(dst, CLASS_IDS_FILE))
        remove_stale_lists(dst, out.saved, written)
        report = os.path.join(dst, REPORT_FILE)
        write_report(report, outcomes)
        prepared = PreparedDataset(dst, report, outcomes)
        out.commit([os.path.relpath(path, dst) for path in [*written, report]], prepare_summary(prepared))
    logger.info("%d converted, %d done before, %d failed, %d missing in %.1f s; report: %s", prepared.count("converted"),
                prepared.count("exists"), prepared.count("failed"), prepared.count("missing"), time.monotonic() - started, report)
    return prepared
