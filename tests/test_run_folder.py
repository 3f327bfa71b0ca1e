"""io/run_folder.py: the one place that names a run's files."""

from __future__ import annotations

from vossegcli.files import PendingFile
from vossegcli.io.run_folder import RunFolder


def test_run_folder_keeps_its_files_inside_and_hidden_except_the_user_facing_ones(tmp_path):
    folder = RunFolder(tmp_path / "out")
    paths = [folder.record_file, folder.state_file, folder.keyframes_dir, folder.corrections_dir, folder.backward_dir,
             folder.blend_dir, folder.auto_seed_file, folder.auto_file, folder.auto_early_dir, folder.keyframe(12)]
    assert all(tmp_path / "out" in p.parents for p in paths)
    assert all(p.relative_to(tmp_path / "out").parts[0].startswith(".vosseg") for p in paths)  # never a mask's name
    assert {folder.timestamps_file.name, folder.diagnostics_file.name} == {"timestamps.csv", "diagnostics.jsonl"}
    assert len({str(p) for p in paths}) == len(paths)


def test_run_folder_round_trips_its_record_and_cleans_only_interrupted_writes(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.holds_run() and folder.read_record() is None
    folder.write_record({"complete": False, "frames": None})
    assert folder.holds_run() and folder.read_record() == {"complete": False, "frames": None}
    folder.record_file.write_text("{not json")
    assert folder.read_record() is None  # unreadable: no record
    stray = PendingFile(tmp_path / "00003.png").tmp  # what a killed write leaves
    (tmp_path / "00002.png").write_bytes(b"png")
    assert folder.clean_temporary_files() == 1
    assert not stray.exists() and (tmp_path / "00002.png").exists() and folder.record_file.exists()
