"""tools/prepare_videos.py never writes over what it reads: a destination that is the source, where
an output would land on a source video, list or Kinetics CSV, or where a rerun would read the copies
as sources, is refused with one line before anything is written or deleted, --overwrite or not."""
import csv
from pathlib import Path
from typing import Dict, Tuple

import pytest

from common.errors import UserError
from tests.data.media import write_clip
from videoconvmae.data.prepare import prepare_videos, read_report


def _contents(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _refused(result: Tuple[int, str], *phrases: str) -> None:
    """Exit 2 with one line naming the problem."""
    code, stderr = result
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: "), stderr
    for phrase in phrases:
        assert phrase in stderr, stderr


@pytest.fixture
def listed(tmp_path) -> Path:
    """A folder with two videos and a train.csv naming them."""
    src = tmp_path / "src"
    write_clip(src / "a.mp4", frames=4)
    write_clip(src / "b.webm", frames=4, seed=1)
    (src / "train.csv").write_text("a.mp4 0\nb.webm 1\n")
    return src


def test_the_source_folder_as_destination_is_refused_and_overwrite_deletes_nothing(listed, tool):
    before = _contents(listed)
    for extra in ((), ("--overwrite",)):
        _refused(tool(listed, listed, *extra), f"DST {listed} is the source folder", "choose another DST")
        assert _contents(listed) == before  # no source deleted, no manifest, lock or report written


def test_a_list_inside_the_destination_is_refused_where_outputs_would_replace_sources(listed, tool):
    before = _contents(listed)
    for extra in ((), ("--overwrite",)):  # a.mp4's output is a.mp4 in DST: the source itself
        _refused(tool(listed / "train.csv", listed, *extra), f"{listed / 'a.mp4'} would replace the source")
        assert _contents(listed) == before
    outside = listed.parent / "elsewhere"  # the list's own name in DST (train.csv) is refused too
    write_clip(outside / "c.mp4", frames=4)
    (listed / "other").mkdir()
    (listed / "other" / "train.csv").write_text(f"{outside / 'c.mp4'} 0\n")
    with pytest.raises(UserError, match=f"{listed / 'other' / 'train.csv'} would replace the source"):
        prepare_videos(str(listed / "other" / "train.csv"), str(listed / "other"), short_side=32, progress=False,
                       overwrite=True)
    assert (listed / "other" / "train.csv").read_text() == f"{outside / 'c.mp4'} 0\n"


def test_a_plain_folder_as_its_own_destination_or_split_folder_is_refused(tmp_path, tool):
    """Run 1 would write train.csv (or train/) into SRC; run 2 would then read SRC as a split layout
    whose videos are the copies, and re-encode them."""
    src = tmp_path / "clips"
    write_clip(src / "cats" / "c.webm", frames=4)
    write_clip(src / "dogs" / "d.webm", frames=4, seed=1)
    before = _contents(src)
    _refused(tool(src, src), "is the source folder")
    for split in ("train", "val"):
        _refused(tool(src, src / split), f"is in {src / split}, a split folder of the source")
    _refused(tool(src, src / "train" / "deeper"), "a split folder of the source")
    assert _contents(src) == before and not (src / "train").exists()
    assert tool(src, src / "prepared")[0] == 0  # inside the source but not a split: never read back


def test_kinetics_csvs_and_video_folder_are_never_destinations(tmp_path, tool):
    videos = tmp_path / "videos"
    write_clip(videos / "abc_000001_000011.mp4", frames=4)
    with open(tmp_path / "train.csv", "w", newline="") as f:  # the official CSV's name is also a list's
        csv.writer(f).writerows([["label", "youtube_id", "time_start", "time_end", "split"], ["x", "abc", 1, 11, "train"]])
    before = _contents(tmp_path)
    _refused(tool(videos, tmp_path, "--kinetics-csv", tmp_path / "train.csv", "--overwrite"),
             f"{tmp_path / 'train.csv'} would replace the source {tmp_path / 'train.csv'}")
    _refused(tool(videos, videos, "--kinetics-csv", tmp_path / "train.csv"), "is the source folder")
    assert _contents(tmp_path) == before


def test_the_sources_are_the_originals_when_the_destination_lies_inside_the_kinetics_folder(tmp_path):
    """The destination inside the video folder is not searched: a rerun takes the downloads, not the
    copies, as sources, and keeps every output."""
    videos = tmp_path / "videos"
    for name in ("air drumming", "zumba"):
        write_clip(videos / name / f"{name[:3]}_000001_000011.mp4", frames=4)
    with open(tmp_path / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["label", "youtube_id", "time_start", "time_end", "split"],
                                 ["air drumming", "air", 1, 11, "train"], ["zumba", "zum", 1, 11, "train"]])
    dst = videos / "aaa prepared"  # searched first by a walk in name order
    for run in range(2):
        prepared = prepare_videos(str(videos), str(dst), short_side=32, progress=False,
                                  kinetics_csvs=[str(tmp_path / "train.csv")])
        rows = read_report(prepared.report)
        assert [row["status"] for row in rows] == (["converted"] * 2 if run == 0 else ["exists"] * 2), rows
        assert all(Path(row["source"]).parent.parent == videos for row in rows), rows
