"""tools/prepare_videos.py and videoconvmae/data/prepare.py on generated media: odd sizes,
rotated, variable frame rate, webm, audio before video, broken files, resume after a kill,
official Kinetics CSVs; the new lists load in a training dataset."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from common.data import build_dataset
from videoconvmae.data.prepare import (
    TMP_PREFIX,
    output_size,
    prepare_videos,
    read_kinetics_csv,
    read_report,
    resample,
)

REPO = Path(__file__).resolve().parents[2]


def gradient_frames(num_frames: int, height: int, width: int) -> np.ndarray:
    """(N, H, W, 3) uint8: a smooth picture with a bright block in the top-left quarter."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([40 + 100 * x / width, 40 + 100 * y / height, np.full_like(x, 60.0)], axis=-1)
    base[: height // 4, : width // 4] = 250
    return np.repeat(base[None].astype(np.uint8), num_frames, axis=0)


def write_source(path: Path, frames: np.ndarray, *, rate: int = 25, rotation: int = 0, pts_ms=None, audio_first: bool = False) -> None:
    """Writes ``frames`` with PyAV: H.264 (yuv444p for odd sizes) or VP9 for .webm; optional
    display rotation, explicit timestamps in ms (variable frame rate), an audio stream first."""
    height, width = frames.shape[1:3]
    with av.open(str(path), "w") as container:
        if audio_first:
            audio = container.add_stream("aac", rate=8000)
        if path.suffix == ".webm":
            stream = container.add_stream("libvpx-vp9", rate=rate, options={"deadline": "realtime", "cpu-used": "8"})
            stream.pix_fmt = "yuv420p"
        else:
            stream = container.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
            stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        stream.width, stream.height = width, height
        if rotation:
            stream.set_display_rotation(rotation)
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if audio_first:
            for _ in range(4):
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
                sound.sample_rate = 8000
                container.mux(audio.encode(sound))
            container.mux(audio.encode())
        for number, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[number], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def decoded(path: str):
    """(frames as (N, H, W, 3) uint8, key-frame numbers, number of audio streams) of ``path``."""
    with av.open(path) as container:
        audio = len(container.streams.audio)
        frames, keys = [], []
        for number, frame in enumerate(container.decode(container.streams.video[0])):
            frames.append(frame.to_ndarray(format="rgb24"))
            if frame.key_frame:
                keys.append(number)
    return np.stack(frames), keys, audio


def test_output_size_sets_the_short_side_keeps_the_aspect_and_never_upscales():
    assert output_size(1280, 720, 320) == (568, 320)  # 568.9 rounded down to even
    assert output_size(720, 1280, 320) == (320, 568)
    assert output_size(99, 75, 64) == (84, 64)  # 84.48
    assert output_size(99, 75, 320) == (98, 74)  # smaller: kept, made even
    assert output_size(3, 1, 320) == (2, 2)


class Stub:
    def __init__(self, name):
        self.name = name


def test_resample_keeps_every_frame_or_takes_the_latest_frame_at_each_tick():
    timed = [(Stub(name), when) for name, when in [("a", 0.0), ("b", 0.04), ("c", 0.30), ("d", 0.32)]]
    assert [f.name for f in resample(iter(timed), None, 0.04)] == ["a", "b", "c", "d"]
    # ticks every 0.1 s up to 0.36 (0.32 + 0.04): 0, .1, .2, .3 -> a (0.0), b (.04), b, c (.30)
    assert [f.name for f in resample(iter(timed), 10, 0.04)] == ["a", "b", "b", "c"]


@pytest.fixture(scope="module")
def mixed_sources(tmp_path_factory):
    """A train list with one source of each awkward kind, a broken file and a missing one."""
    root = tmp_path_factory.mktemp("sources")
    upright = gradient_frames(6, 48, 64)
    write_source(root / "odd.mp4", gradient_frames(6, 75, 99))
    write_source(root / "rotated.mp4", np.rot90(upright, k=-1, axes=(1, 2)), rotation=90)  # stored turned clockwise
    write_source(root / "vfr.mp4", gradient_frames(8, 48, 64), pts_ms=[0, 33, 66, 200, 233, 400, 433, 466])
    write_source(root / "clip.webm", gradient_frames(10, 48, 64))
    write_source(root / "audio_first.mp4", gradient_frames(5, 48, 64), audio_first=True)
    (root / "broken.mp4").write_bytes(os.urandom(3000))
    names = ["odd.mp4", "rotated.mp4", "vfr.mp4", "clip.webm", "audio_first.mp4", "broken.mp4", "gone.mp4"]
    (root / "train.csv").write_text("".join(f"{name} {label % 2}\n" for label, name in enumerate(names)))
    return root, upright


def test_awkward_sources_are_converted_and_broken_ones_listed(mixed_sources, tmp_path):
    root, upright = mixed_sources
    prepared = prepare_videos(str(root / "train.csv"), str(tmp_path), short_side=64, gop=4, workers=2, progress=False)
    rows = {row["source"]: row for row in read_report(prepared.report)}
    assert {os.path.basename(s): r["status"] for s, r in rows.items()} == {
        "odd.mp4": "converted", "rotated.mp4": "converted", "vfr.mp4": "converted", "clip.webm": "converted",
        "audio_first.mp4": "converted", "broken.mp4": "failed", "gone.mp4": "failed"}
    assert rows[str(root / "broken.mp4")]["reason"] and "gone.mp4" in rows[str(root / "gone.mp4")]["reason"]
    # the list names the converted videos only, with their labels, relative to the output folder
    assert (tmp_path / "train.csv").read_text().splitlines() == [
        "odd.mp4 0", "rotated.mp4 1", "vfr.mp4 0", "clip.mp4 1", "audio_first.mp4 0"]
    expected = {"odd.mp4": (6, 64, 84), "rotated.mp4": (6, 48, 64), "vfr.mp4": (8, 48, 64), "clip.mp4": (10, 48, 64),
                "audio_first.mp4": (5, 48, 64)}
    for name, shape in expected.items():
        frames, keys, audio = decoded(str(tmp_path / name))
        assert frames.shape[:3] == shape and audio == 0, name
        assert keys[0] == 0 and max(np.diff(keys + [len(frames)])) <= 4, (name, keys)  # a keyframe every <= 4 frames
    frames, _, _ = decoded(str(tmp_path / "rotated.mp4"))
    error = np.abs(frames[0].astype(int) - upright[0]).mean()
    assert error < 8 and frames[0][:12, :16].mean() > 200  # upright: the bright block top-left
    assert not list(tmp_path.rglob(f"{TMP_PREFIX}*"))


def test_a_frame_rate_resamples_a_variable_rate_source(mixed_sources, tmp_path):
    root, _ = mixed_sources
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.csv").write_text(f"{root / 'vfr.mp4'} 0\n")
    prepared = prepare_videos(str(tmp_path / "src" / "train.csv"), str(tmp_path / "out"), short_side=64, fps=10, progress=False)
    assert prepared.count("converted") == 1
    with av.open(str(root / "vfr.mp4")) as container:
        last_duration = 1 / float(container.streams.video[0].average_rate)
    ticks = sum(k / 10 < 0.466 + last_duration - 1e-9 for k in range(100))
    frames, _, _ = decoded(str(tmp_path / "out" / "train" / "vfr.mp4"))  # a source outside the list folder
    assert len(frames) == ticks


def _kinetics_miniature(root: Path) -> Path:
    """Official-CSV layout: videos of two classes, one in a class folder, one flat, one missing."""
    videos = root / "videos"
    (videos / "air drumming").mkdir(parents=True)
    write_source(videos / "air drumming" / "aaa_000010_000020.mp4", gradient_frames(20, 48, 64))
    write_source(videos / "bbb_000001_000011.mp4", gradient_frames(20, 48, 64))
    write_source(videos / "ccc_000005_000015.mp4", gradient_frames(20, 48, 64))
    with open(root / "train.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows([["air drumming", "aaa", 10, 20, "train", 0], ["abseiling", "bbb", 1, 11, "train", 0],
                          ["abseiling", "zzz", 3, 13, "train", 0]])
    with open(root / "validate.csv", "w", newline="") as f:
        f.write("label,youtube_id,time_start,time_end,split\nair drumming,ccc,5,15,val\n")
    return videos


def test_official_kinetics_csvs_give_lists_classids_and_a_report_of_missing_videos(tmp_path, make_cfg):
    videos = _kinetics_miniature(tmp_path)
    dst = tmp_path / "prepared"
    prepared = prepare_videos(str(videos), str(dst), short_side=32, workers=1, progress=False,
                              kinetics_csvs=[str(tmp_path / "train.csv"), str(tmp_path / "validate.csv")])
    assert json.loads((dst / "classids.json").read_text()) == {"abseiling": 0, "air drumming": 1}
    assert (dst / "train.csv").read_text().splitlines() == [
        "train/air_drumming/aaa_000010_000020.mp4 1", "train/abseiling/bbb_000001_000011.mp4 0"]
    assert (dst / "val.csv").read_text().splitlines() == ["val/air_drumming/ccc_000005_000015.mp4 1"]
    missing = [row for row in read_report(prepared.report) if row["status"] == "missing"]
    assert [row["output"] for row in missing] == ["train/abseiling/zzz_000003_000013.mp4"]
    assert "zzz_000003_000013" in missing[0]["reason"]
    # the new lists load in a training dataset
    cfg = make_cfg(PATH_TO_DATA_DIR=str(dst), NUM_FRAMES=4, SAMPLING_RATE=2, TRAIN_CROP_SIZE=32, NUM_CLASSES=2)
    item = build_dataset(cfg, "pretrain")[0][0]
    assert item["video"].shape == (3, 4, 32, 32) and item["label"] == 1 and item["decode_failures"] == 0


def test_a_kinetics_csv_without_the_official_columns_names_the_file(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("youtube_id,time_start\nabc,1\n")
    with pytest.raises(ValueError, match=f"{path}: missing column\\(s\\) \\['label', 'time_end', 'split'\\]"):
        read_kinetics_csv(str(path))


def test_a_killed_run_leaves_no_half_file_and_a_rerun_finishes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for number in range(3):
        write_source(src / f"v{number}.mp4", gradient_frames(60, 192, 256) + number)
    (src / "train.csv").write_text("".join(f"v{number}.mp4 0\n" for number in range(3)))
    dst = tmp_path / "dst"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, str(REPO / "tools" / "prepare_videos.py"), str(src / "train.csv"), str(dst),
               "--short-side", "120", "--workers", "1", "--no-progress", "--preset", "medium"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if list(dst.glob("v*.mp4")) and list(dst.glob(f"{TMP_PREFIX}*")):  # one done, the next half written
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-write"
    done_before = sorted(p.name for p in dst.glob("v*.mp4"))
    assert list(dst.glob(f"{TMP_PREFIX}*")) and len(done_before) < 3
    for name in done_before:  # every file under a final name is complete
        assert decoded(str(dst / name))[0].shape == (60, 120, 160, 3)
    prepared = prepare_videos(str(src / "train.csv"), str(dst), short_side=120, workers=1, progress=False)
    statuses = {os.path.basename(o.job.output): o.status for o in prepared.outcomes}
    assert statuses == {f"v{n}.mp4": ("exists" if f"v{n}.mp4" in done_before else "converted") for n in range(3)}
    assert not list(dst.glob(f"{TMP_PREFIX}*"))
    assert len((dst / "train.csv").read_text().splitlines()) == 3
    for number in range(3):
        assert decoded(str(dst / f"v{number}.mp4"))[0].shape == (60, 120, 160, 3)
