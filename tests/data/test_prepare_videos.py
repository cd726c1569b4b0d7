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
from common.errors import UserError
from common.files import exclusive_lock_or_fail, is_engine_temp, temp_path
from videoconvmae.data.prepare import (
    Job,
    check_unique_outputs,
    output_name,
    output_size,
    prepare_videos,
    read_kinetics_csv,
    read_report,
    resample,
)

REPO = Path(__file__).resolve().parents[2]


def _engine_temps(folder: Path):
    """Temp files of the engine's writers under ``folder``."""
    return [p for p in folder.rglob("*") if is_engine_temp(p.name)]


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
        "odd.mp4 0", "rotated.mp4 1", "vfr.mp4 0", "clip.webm.mp4 1", "audio_first.mp4 0"]
    expected = {"odd.mp4": (6, 64, 84), "rotated.mp4": (6, 48, 64), "vfr.mp4": (8, 48, 64),
                "clip.webm.mp4": (10, 48, 64), "audio_first.mp4": (5, 48, 64)}
    for name, shape in expected.items():
        frames, keys, audio = decoded(str(tmp_path / name))
        assert frames.shape[:3] == shape and audio == 0, name
        assert keys[0] == 0 and max(np.diff(keys + [len(frames)])) <= 4, (name, keys)  # a keyframe every <= 4 frames
    frames, _, _ = decoded(str(tmp_path / "rotated.mp4"))
    error = np.abs(frames[0].astype(int) - upright[0]).mean()
    assert error < 8 and frames[0][:12, :16].mean() > 200  # upright: the bright block top-left
    assert not _engine_temps(tmp_path)


def test_a_frame_rate_resamples_a_variable_rate_source(mixed_sources, tmp_path):
    root, _ = mixed_sources
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.csv").write_text(f"{root / 'vfr.mp4'} 0\n")
    prepared = prepare_videos(str(tmp_path / "src" / "train.csv"), str(tmp_path / "out"), short_side=64, fps=10, progress=False)
    assert prepared.count("converted") == 1
    with av.open(str(root / "vfr.mp4")) as container:
        last_duration = 1 / float(container.streams.video[0].average_rate)
    ticks = sum(k / 10 < 0.466 + last_duration - 1e-9 for k in range(100))
    output = prepared.outcomes[0].job.output  # a source outside the list folder: under train/%2F/
    assert output == os.path.join("train", "%2F", *Path(root / "vfr.mp4").parts[1:])
    frames, _, _ = decoded(str(tmp_path / "out" / output))
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
    with pytest.raises(UserError, match=f"{path}: missing column\\(s\\) \\['time_end', 'split'\\]"):
        read_kinetics_csv(str(path))


def test_the_official_test_csv_without_labels_gives_a_path_only_test_list(tmp_path):
    videos = _kinetics_miniature(tmp_path)
    write_source(videos / "ddd_000002_000012.mp4", gradient_frames(8, 48, 64))
    (videos / "eee_000003_000013.mp4").write_bytes(b"")  # an empty download: failed with the reason
    (tmp_path / "test.csv").write_text("youtube_id,time_start,time_end,split\nddd,2,12,test\neee,3,13,test\n")
    dst = tmp_path / "prepared"
    prepared = prepare_videos(str(videos), str(dst), short_side=32, progress=False,
                              kinetics_csvs=[str(tmp_path / "train.csv"), str(tmp_path / "test.csv")])
    rows = {row["output"]: row for row in read_report(prepared.report)}
    assert rows["test/unlabelled/ddd_000002_000012.mp4"]["status"] == "converted"
    failed = rows["test/unlabelled/eee_000003_000013.mp4"]
    assert failed["status"] == "failed" and failed["reason"].endswith("eee_000003_000013.mp4: empty file")
    assert (dst / "test.csv").read_text().splitlines() == ["test/unlabelled/ddd_000002_000012.mp4"]
    assert json.loads((dst / "classids.json").read_text()) == {"abseiling": 0, "air drumming": 1}


def test_mistakes_on_the_command_line_are_one_line(tmp_path, tool):
    listing = _small_source(tmp_path)
    official = listing.rename(listing.with_name("kinetics400_train_list_videos.txt"))  # VideoMAE's list name
    for argv, message in (
        ((official, tmp_path / "dst"), f"error: {official}: cannot tell the split from the list's name "
                                      "'kinetics400_train_list_videos' (accepted: test, train, training, val, validate, "
                                      "validation); pass --split train, val or test, or rename the list"),
        ((official, tmp_path / "dst", "--split", "dev"), "error: --split dev: expected one of test, train, training"),
        ((listing.parent, tmp_path / "dst", "--split", "val"), "error: --split val: only for a list file"),
        ((official, tmp_path / "dst", "--split", "train", "--short-side", "1"), "error: --short-side 1: expected 2 or more"),
        ((official, tmp_path / "dst", "--split", "train", "--gop", "0"), "error: --gop 0: expected 1 or more"),
        ((listing.parent, tmp_path / "dst", "--kinetics-csv", tmp_path / "nope.csv"),
         f"error: --kinetics-csv {tmp_path / 'nope.csv'} does not exist"),
    ):
        code, err = tool(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(message), err
    assert not (tmp_path / "dst").exists()
    assert tool(official, tmp_path / "dst", "--split", "train")[0] == 0
    assert (tmp_path / "dst" / "train.csv").read_text().splitlines() == ["v0.mp4 0", "v1.mp4 0"]


def test_the_pool_works_whatever_start_method_the_program_chose(tmp_path):
    """The workers must be children of the process that makes the pool (``die_with_parent``): under
    forkserver (a default of newer Pythons) they are the fork server's and used to exit at once."""
    listing = _small_source(tmp_path)
    code = ("import multiprocessing; multiprocessing.set_start_method('forkserver')\n"
            "from videoconvmae.data.prepare import prepare_videos\n"
            "if __name__ == '__main__':\n"
            f"    done = prepare_videos({str(listing)!r}, {str(tmp_path / 'dst')!r}, short_side=32, workers=2, "
            "progress=False)\n"
            "    print([o.status for o in done.outcomes])\n")
    result = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "['converted', 'converted']", result.stderr


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
        if list(dst.glob("v*.mp4")) and [p for p in _engine_temps(dst) if ".mp4." in p.name]:  # one done, the next half written
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-write"
    done_before = sorted(p.name for p in dst.glob("v*.mp4"))
    assert _engine_temps(dst) and len(done_before) < 3
    for name in done_before:  # every file under a final name is complete
        assert decoded(str(dst / name))[0].shape == (60, 120, 160, 3)
    prepared = prepare_videos(str(src / "train.csv"), str(dst), short_side=120, workers=1, progress=False,
                              preset="medium")  # the killed run's settings (another preset is refused)
    statuses = {os.path.basename(o.job.output): o.status for o in prepared.outcomes}
    assert statuses == {f"v{n}.mp4": ("exists" if f"v{n}.mp4" in done_before else "converted") for n in range(3)}
    assert not _engine_temps(dst)
    assert len((dst / "train.csv").read_text().splitlines()) == 3
    for number in range(3):
        assert decoded(str(dst / f"v{number}.mp4"))[0].shape == (60, 120, 160, 3)


# ---------------------------------------------------------------- names, manifest, lock, workers


TRICKY_NAMES = ["x y.mp4", "x_y.mp4", "x%20y.mp4", "clip.mp4", "clip.webm", "clip.webm.mp4", "noext", "noext.mp4",
                "a,b.mp4", ".hidden.mp4", ".hidden", "my.video.mp4", "my%2Evideo.mp4", "v.MP4", "é t.mp4", ".mp4",
                "sub/x y.mp4", "sub dir/v.mp4", "sub_dir/v.mp4", "sub%20dir/v.mp4"]


def test_output_names_are_unique_stable_and_list_safe(tmp_path):
    root = str(tmp_path / "data")
    names = [output_name(os.path.join(root, name), root, "train") for name in TRICKY_NAMES]
    assert len(set(names)) == len(TRICKY_NAMES), sorted(names)
    for name in names:
        assert name.endswith(".mp4") and not set(name) & set(" ,\t\"'") and "\\" not in name
        assert not any(part.startswith(".") for part in Path(name).parts), name  # never hidden, never a temp name
    plain = {"clip.mp4": "clip.mp4", "clip.webm": "clip.webm.mp4", "x_y.mp4": "x_y.mp4", "sub/x y.mp4": "sub/x%20y.mp4"}
    for source, expected in plain.items():  # a function of the source path alone: stable whatever else is listed
        assert output_name(os.path.join(root, source), root, "val") == expected
    outside = [output_name(str(tmp_path / folder / "x.mp4"), root, "train") for folder in ("a", "b")]
    assert len(set(outside) | set(names)) == len(names) + 2  # sources outside the list's folder too


def test_two_sources_for_one_output_are_refused_at_start():
    check_unique_outputs([Job("/v/a.mp4", "a.mp4", 0, "train"), Job("/v/a.mp4", "a.mp4", 1, "val")])  # one video, two lists
    with pytest.raises(UserError, match="/v/a.mp4 and /w/a.mp4 would both be written to a.mp4"):
        check_unique_outputs([Job("/v/a.mp4", "a.mp4", 0, "train"), Job("/w/a.mp4", "a.mp4", 0, "train")])


def test_sources_whose_names_used_to_collide_are_all_converted(tmp_path, make_cfg):
    """``x y.mp4`` / ``x_y.mp4`` and ``clip.mp4`` / ``clip.webm`` used to share an output: one was lost
    while the report said converted for both."""
    folder = tmp_path / "src" / "train" / "class_a"
    folder.mkdir(parents=True)
    frame_counts = {"x y.mp4": 3, "x_y.mp4": 4, "clip.mp4": 5, "clip.webm": 6}
    for name, count in frame_counts.items():
        write_source(folder / name, gradient_frames(count, 48, 64))
    dst = tmp_path / "dst"
    prepared = prepare_videos(str(tmp_path / "src"), str(dst), short_side=32, progress=False)
    rows = read_report(prepared.report)
    assert [row["status"] for row in rows] == ["converted"] * 4 and len({row["output"] for row in rows}) == 4
    for row in rows:  # each output holds its own source's frames
        assert len(decoded(str(dst / row["output"]))[0]) == frame_counts[os.path.basename(row["source"])], row
    assert sorted((dst / "train.csv").read_text().splitlines()) == sorted(f"{row['output']} 0" for row in rows)
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(dst), NUM_FRAMES=2, SAMPLING_RATE=1, TRAIN_CROP_SIZE=32,
                                     NUM_CLASSES=1), "pretrain")
    items = [dataset[i][0] for i in range(4)]  # the encoded names (x%20y.mp4) load as they are listed
    assert [item["decode_failures"] for item in items] == [0] * 4


def _small_source(tmp_path, names=("v0.mp4", "v1.mp4")):
    src = tmp_path / "src"
    src.mkdir()
    for number, name in enumerate(names):
        write_source(src / name, gradient_frames(4 + number, 48, 64))
    (src / "train.csv").write_text("".join(f"{name} 0\n" for name in names))
    return src / "train.csv"


def _prepare_tool(*argv):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, str(REPO / "tools" / "prepare_videos.py"), *map(str, argv), "--no-progress",
                           "--workers", "1"], env=env, capture_output=True, text=True, timeout=120)


def test_a_rerun_with_other_settings_is_refused_and_overwrite_starts_over(tmp_path):
    listing, dst = _small_source(tmp_path), tmp_path / "dst"
    prepare_videos(str(listing), str(dst), short_side=32, progress=False)
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["tool"] == "prepare_videos" and manifest["settings"]["short_side"] == 32
    assert manifest["code"]["version"] and set(manifest["outputs"]) >= {"v0.mp4", "v1.mp4", "train.csv"}
    before = {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file() and p.name != ".run.lock"}
    refused = _prepare_tool(listing, dst, "--short-side", 24)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "short_side: saved 32, now 24" in refused.stderr and "--overwrite" in refused.stderr
    assert {p.name: p.read_bytes() for p in dst.iterdir() if p.is_file() and p.name != ".run.lock"} == before
    again = prepare_videos(str(listing), str(dst), short_side=32, progress=False)  # same settings: resumes
    assert [o.status for o in again.outcomes] == ["exists", "exists"]
    redone = prepare_videos(str(listing), str(dst), short_side=24, progress=False, overwrite=True)
    assert [o.status for o in redone.outcomes] == ["converted", "converted"]
    assert decoded(str(dst / "v0.mp4"))[0].shape[1:3] == (24, 32)


def test_a_file_the_tool_did_not_write_is_never_taken_or_replaced(tmp_path):
    listing, dst = _small_source(tmp_path), tmp_path / "dst"
    dst.mkdir()
    (dst / "v1.mp4").write_bytes(b"the user's own video")
    with pytest.raises(UserError, match=f"{dst / 'v1.mp4'}.*not written by prepare_videos.*--overwrite"):
        prepare_videos(str(listing), str(dst), short_side=32, progress=False)
    assert (dst / "v1.mp4").read_bytes() == b"the user's own video" and not (dst / "v0.mp4").exists()


def test_a_second_writer_is_refused_and_stale_temp_files_are_removed(tmp_path):
    listing, dst = _small_source(tmp_path), tmp_path / "dst"
    (dst / "sub").mkdir(parents=True)
    stale = [temp_path(dst / "v0.mp4"), temp_path(dst / "sub" / "v9.mp4")]
    foreign = dst / "sub" / "notes.tmp"
    for path in stale + [foreign]:
        path.write_text("left behind")
    with exclusive_lock_or_fail(dst / ".run.lock"):
        with pytest.raises(UserError, match="in use by another"):
            prepare_videos(str(listing), str(dst), short_side=32, progress=False)
    assert prepare_videos(str(listing), str(dst), short_side=32, progress=False).count("converted") == 2
    assert not any(p.exists() for p in stale) and foreign.read_text() == "left behind"


def _children(pid):
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killing_the_main_process_ends_its_pool_workers(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for number in range(4):  # noise: slow to encode, so the kill comes in the middle of the work
        noise = np.random.default_rng(number).integers(0, 256, (100, 192, 256, 3), dtype=np.uint8)
        write_source(src / f"v{number}.mp4", noise)
    (src / "train.csv").write_text("".join(f"v{number}.mp4 0\n" for number in range(4)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, str(REPO / "tools" / "prepare_videos.py"), str(src / "train.csv"), str(tmp_path / "dst"),
               "--short-side", "120", "--workers", "2", "--no-progress", "--preset", "medium"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and process.poll() is None and len(workers) < 2:
        workers = _children(process.pid)
        time.sleep(0.01)
    time.sleep(0.5)  # the pool is converting
    assert process.poll() is None and all(map(_alive, workers)) and len(workers) == 2, "the run ended too soon"
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(map(_alive, workers)):
        time.sleep(0.1)
    left = [pid for pid in workers if _alive(pid)]
    for pid in left:  # do not leave them to the machine
        os.kill(pid, signal.SIGKILL)
    assert left == [], "pool workers outlived their killed parent"
