"""The one manifest mechanism of the result tools (common/manifest.py): what a rerun compares,
what it may reuse, what --overwrite deletes, the lock, the temp clean-up, the commit."""
import json
import os

import pytest

from common.errors import UserError
from common.files import exclusive_lock_or_fail, temp_path
from common.manifest import Manifest, OutputFolder, code_version, differences, sha256_of


def _manifest(**changes):
    fields = dict(tool="t", settings={"pool": "mean", "sizes": {"crop": 32}}, inputs=["/a.mp4", "/b.mp4"],
                  outputs={"a.npy": "/a.mp4", "b.npy": "/b.mp4", "index.csv": ""})
    return Manifest(**{**fields, **changes})


def test_differences_name_each_changed_setting_and_the_inputs():
    assert differences(_manifest(), _manifest()) == []
    changed = _manifest(settings={"pool": "none", "sizes": {"crop": 64}, "extra": 1},
                        inputs=["/b.mp4", "/c.mp4", "/d.mp4"])
    text = "; ".join(differences(_manifest(), changed))
    assert "pool: saved 'mean', now 'none'" in text and "sizes.crop: saved 32, now 64" in text
    assert "extra: saved None, now 1" in text and "inputs: 2 added (/c.mp4, /d.mp4), 1 removed (/a.mp4)" in text
    assert differences(_manifest(), _manifest(inputs=["/b.mp4", "/a.mp4"])) == ["inputs: the same files in another order"]
    assert differences(_manifest(), _manifest(tool="u")) == ["tool: saved 't', now 'u'"]


def test_a_folder_is_claimed_compared_reused_and_committed(tmp_path):
    folder = tmp_path / "out"
    with OutputFolder(folder) as out:
        assert out.start(_manifest(), overwrite=False) is False  # nothing to resume
        (folder / "index.csv").write_text("x\n")
        out.commit(["index.csv"], {"failed": {"/b.mp4": "broken"}})
    saved = json.loads((folder / "manifest.json").read_text())
    assert saved["files"] == {"index.csv": sha256_of(folder / "index.csv")} and saved["code"] == code_version()
    assert saved["summary"] == {"failed": {"/b.mp4": "broken"}}
    with OutputFolder(folder) as out:
        assert out.start(_manifest(), overwrite=False) is True and out.committed_files_intact()
        (folder / "index.csv").write_text("cut\n")  # a set cut between its files
        assert not out.committed_files_intact()
    with OutputFolder(folder) as out:
        with pytest.raises(UserError, match=f"--output {folder} holds results of other settings \\(pool: saved "
                                            "'mean', now 'none'\\); rerun with --overwrite"):
            out.start(_manifest(settings={"pool": "none", "sizes": {"crop": 32}}), overwrite=False)


def test_overwrite_deletes_only_what_the_manifest_names(tmp_path):
    folder = tmp_path / "out"
    with OutputFolder(folder) as out:
        out.start(_manifest(), overwrite=False)
        for name in ("a.npy", "index.csv", "mine.txt"):
            (folder / name).write_text(name)
        out.commit(["index.csv"], {})
    with OutputFolder(folder) as out:
        out.start(_manifest(settings={"pool": "none"}, inputs=["/c.mp4"], outputs={"c.npy": "/c.mp4"}), overwrite=True)
    assert sorted(os.listdir(folder)) == [".run.lock", "manifest.json", "mine.txt"]
    assert json.loads((folder / "manifest.json").read_text())["outputs"] == {"c.npy": "/c.mp4"}


def test_outputs_the_manifest_does_not_name_are_refused_and_other_sources_replaced(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "a.npy").write_text("the user's")
    with OutputFolder(folder) as out:
        with pytest.raises(UserError, match=f"{folder / 'a.npy'}, not written by t "):
            out.start(_manifest(), overwrite=False)
    assert (folder / "a.npy").read_text() == "the user's"
    (folder / "a.npy").unlink()
    with OutputFolder(folder) as out:
        out.start(_manifest(), overwrite=False)
        (folder / "a.npy").write_text("made from /a.mp4")
    with OutputFolder(folder) as out:  # same settings, a.npy now planned from another source
        out.start(_manifest(outputs={"a.npy": "/z.mp4"}), overwrite=False)
    assert not (folder / "a.npy").exists()


def test_a_held_folder_is_refused_and_only_engine_temp_files_are_cleaned(tmp_path):
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    stale = temp_path(folder / "sub" / "a.npy")
    stale.write_text("half")
    (folder / "sub" / "a.npy.tmp").write_text("the user's")
    with exclusive_lock_or_fail(folder / ".run.lock"):
        with pytest.raises(UserError, match=f"--output {folder} is in use by another run \\(pid {os.getpid()} on "):
            OutputFolder(folder).__enter__()
    with OutputFolder(folder):
        assert not stale.exists() and (folder / "sub" / "a.npy.tmp").exists()


def test_the_temp_files_of_other_runs_below_or_beside_are_left_alone(tmp_path):
    """A training run's folder under --output (its .run.lock), and a single-file output in the same
    folder (its .NAME.lock), own their temp files: a live writer renames them in a moment."""
    folder = tmp_path / "runs"
    (folder / "pretrain_a").mkdir(parents=True)
    (folder / "pretrain_a" / ".run.lock").write_text("pid 1 on host")
    training = temp_path(folder / "pretrain_a" / "checkpoint-last.pth")
    training.write_text("being written")
    (folder / ".predictions.jsonl.lock").write_text("pid 2 on host")
    predicting = temp_path(folder / "predictions.jsonl")
    predicting.write_text("being written")
    stale = temp_path(folder / "features.npy")
    stale.write_text("half")
    with OutputFolder(folder):
        assert training.exists() and predicting.exists() and not stale.exists()


def test_a_single_output_file_has_its_manifest_beside_it(tmp_path):
    target = tmp_path / "p.jsonl"
    foreign_temp = temp_path(tmp_path / "other.txt")  # another writer's temp in the same folder: not ours
    foreign_temp.write_text("someone else's")
    own_temp = temp_path(target)
    own_temp.write_text("half")
    with OutputFolder(target, single_file=True) as out:
        out.start(_manifest(outputs={"p.jsonl": ""}), overwrite=False)
        target.write_text("{}\n")
        out.commit(["p.jsonl"], {})
    assert json.loads((tmp_path / "p.jsonl.manifest.json").read_text())["files"] == {"p.jsonl": sha256_of(target)}
    assert foreign_temp.exists() and not own_temp.exists()
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(UserError, match=f"cannot write --output {tmp_path / 'd.jsonl'}: it is a directory"):
        OutputFolder(tmp_path / "d.jsonl", single_file=True).__enter__()
