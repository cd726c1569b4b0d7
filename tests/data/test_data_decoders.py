import os
import threading
import time

import av
import pytest
import torch

from videoconvmae.data.decoders import DecodeError, DecordVideo, PyAVVideo, build_decoder, count_frames_pyav, plan_clips

CLIPS = lambda n: [torch.arange(0, n, 3), torch.tensor([1, 1, 5, n - 1])]  # noqa: E731


def _first_video(folder, suffix):
    return str(next(p for p in sorted(folder.rglob(f"*{suffix}"))))


@pytest.mark.parametrize("fmt, suffix", [("kinetics", ".mp4"), ("ssv2", ".webm")])
def test_decord_and_pyav_give_bit_identical_frames(video_data, fmt, suffix):
    path = _first_video(video_data[fmt], suffix)
    decoded = {name: build_decoder(name, fallback=False).decode(path, CLIPS) for name in ("decord", "pyav")}
    a, b = decoded["decord"], decoded["pyav"]
    assert a.frames.dtype == torch.uint8 and a.frames.shape[1:] == (48, 64, 3)
    assert torch.equal(a.frames, b.frames)
    assert a.clip(1).shape == (4, 48, 64, 3) and torch.equal(a.clip(1)[0], a.clip(1)[1])
    assert [c.tolist() for c in a.frame_indices] == [c.tolist() for c in CLIPS(40)]


def test_frame_count_comes_from_the_decoder_not_the_webm_header(video_data):
    path = _first_video(video_data["ssv2"], ".webm")
    with av.open(path) as container:
        assert container.streams.video[0].frames == 0  # the header says nothing
    assert count_frames_pyav(path) == DecordVideo(path).num_frames == PyAVVideo(path).num_frames == 40


def test_pyav_keeps_the_decodable_part_of_a_truncated_file_decord_gives_up_on(bad_videos, tmp_path):
    data = bad_videos["good"].read_bytes()
    damaged = tmp_path / "tail_cut.mp4"
    damaged.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(Exception):
        DecordVideo(str(damaged)).read(list(range(20)))
    decoded = build_decoder("decord", fallback=True).decode(str(damaged), lambda n: [torch.arange(n)])
    good = build_decoder("pyav").decode(str(bad_videos["good"]), lambda n: [torch.arange(n)])
    assert 0 < decoded.num_frames < 40
    assert torch.equal(decoded.frames[:10], good.frames[:10])
    with pytest.raises(DecodeError, match="decord: .*; pyav: "):
        build_decoder("decord", fallback=True).decode(str(bad_videos["truncated"]), CLIPS)


@pytest.mark.parametrize("kind, reason", [("missing", "file not found"), ("audio_only", "no video stream"), ("empty", "pyav"), ("unreadable", "pyav")])
def test_bad_files_raise_decode_error_with_path_and_reason(bad_videos, kind, reason):
    with pytest.raises(DecodeError, match=reason) as caught:
        build_decoder("decord").decode(str(bad_videos[kind]), CLIPS)
    assert caught.value.path == str(bad_videos[kind])


def test_hanging_open_is_bounded_by_the_timeout(tmp_path):
    fifo = tmp_path / "never_written.mp4"
    os.mkfifo(fifo)
    start = time.monotonic()
    try:
        with pytest.raises(DecodeError, match="timed out"):
            build_decoder("decord", timeout_s=0.5).decode(str(fifo), CLIPS)
        assert time.monotonic() - start < 5
    finally:  # release the abandoned decoder thread
        threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()


def test_build_decoder_backends_and_unknown_backend():
    assert build_decoder("decord").backends == ("decord", "pyav")
    assert build_decoder("decord", fallback=False).backends == ("decord",)
    assert build_decoder("pyav").backends == ("pyav",)
    with pytest.raises(ValueError, match="unknown decoding backend"):
        build_decoder("opencv")


def test_plan_clips_dedupes_indices(video_data):
    video = build_decoder("decord").open(_first_video(video_data["kinetics"], ".mp4"))
    clips, unique = plan_clips(video, lambda n: [torch.tensor([4, 2, 2]), torch.tensor([2, 9])])
    assert unique.tolist() == [2, 4, 9] and len(clips) == 2
