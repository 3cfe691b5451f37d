"""A user's own CARLA recordings (numbered frames, not Kaggle names) split without leaks."""

from __future__ import annotations

import numpy as np
import pytest

import datasets.lyft_udacity as lyft
from datasets.lyft_udacity import splits
from tests.datasets.builder_helpers import label_png, png, read_splits


def recording_tree(root, names: list[str], height: int = 16, width: int = 16) -> None:
    """Writes valid CameraRGB/CameraSeg pairs ``root/<folder>/Camera*/<file>`` for names."""
    rng = np.random.default_rng(0)
    for name in names:
        folder, file = name.rsplit("/", 1) if "/" in name else ("", name)
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ids = rng.integers(0, 13, (height, width), dtype=np.uint8)
        for sub, data in (("CameraRGB", png(image)), ("CameraSeg", label_png(ids))):
            path = root / folder / sub / file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


def frame_number(name: str) -> int:
    return int(name.rsplit("_", 1)[1].split(".")[0])


def adjacent_pairs_across_splits(parts: dict[str, list[str]], frames: list[str]) -> int:
    """How many neighbouring frames of the recording sit in different splits."""
    split_of = {name: s for s, names in parts.items() for name in names}
    order = sorted(frames, key=frame_number)
    return sum(split_of[a] != split_of[b] for a, b in zip(order, order[1:], strict=False))


# Every third frame of one drive, as a recorder names them (not PP_EE_FFF).
DRIVE = [f"drive-stream1-000_{i:04d}.png" for i in range(21, 21 + 3 * 40, 3)]


def test_old_rule_leaks_and_new_rule_keeps_blocks():
    # The per-frame rule scatters neighbours over all splits: the leak.
    old = splits.split_items(DRIVE, splits.episode_key)
    assert adjacent_pairs_across_splits(old, DRIVE) > 10
    new, summary = splits.split_frames(DRIVE, lambda n: n)
    # Contiguous blocks: only the two block boundaries separate neighbours.
    assert adjacent_pairs_across_splits(new, DRIVE) == 2
    numbers = {s: sorted(map(frame_number, names)) for s, names in new.items()}
    assert max(numbers["train"]) < min(numbers["validation"])
    assert max(numbers["validation"]) < min(numbers["test"])
    assert {s: len(v) for s, v in new.items()} == {"train": 24, "validation": 8, "test": 8}
    assert summary == [
        "recording drive-stream1-000_* (40 frames): train frames 21..90 (24), "
        "validation frames 93..114 (8), test frames 117..138 (8)"
    ]


def test_frame_order_is_numeric_and_per_folder():
    # 9 < 10 numerically (not as strings); two folders are two recordings.
    names = [f"a/run_{i}.png" for i in range(10)] + [f"b/run_{i}.png" for i in range(5)]
    parts, summary = splits.split_frames(names, lambda n: n)
    assert parts["test"] == ["a/run_8.png", "a/run_9.png", "b/run_4.png"]
    assert parts["validation"] == ["a/run_6.png", "a/run_7.png", "b/run_3.png"]
    assert len(summary) == 2


def test_kaggle_names_keep_the_episode_rule():
    names = [f"dataA/02_{e:02d}_{f:03d}.png" for e in range(6) for f in range(3)]
    new, summary = splits.split_frames(names, lambda n: n)
    assert new == splits.split_items(names, splits.episode_key)
    assert summary[0].startswith("groups placed whole: train")


def test_split_group_keeps_matching_names_together():
    names = [f"rec{r}_{i:03d}.png" for r in range(10) for i in range(4)]
    parts, _ = splits.split_frames(names, lambda n: n, group_pattern=r"^(rec\d+)_")
    for r in range(10):
        homes = {s for s, ns in parts.items() for n in ns if n.startswith(f"rec{r}_")}
        assert len(homes) == 1
    assert all(parts.values())


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("(", "not a regular expression"), (r"^zzz", "does not match --config.split_group")],
)
def test_bad_split_group_names_the_value(pattern, message):
    with pytest.raises(lyft.DataError, match=message):
        splits.split_frames(DRIVE, lambda n: n, group_pattern=pattern)


def test_too_short_recording_is_an_error_naming_it():
    assert all(
        splits.split_frames(["x/a_1.png", "x/a_2.png", "x/a_3.png"], lambda n: n)[0].values()
    )
    with pytest.raises(
        lyft.DataError, match=r"recording x/a_\*: a recording of 2 frames is too short"
    ):
        splits.split_frames(["x/a_1.png", "x/a_2.png"], lambda n: n)


def test_builder_splits_own_recording_in_blocks_and_reprepares_other_data(tmp_path, capsys):
    manual = tmp_path / "rec"
    names = [f"rec/{n}" for n in DRIVE[:20]]
    recording_tree(tmp_path, names)
    data = str(tmp_path / "data")
    examples = read_splits(lyft.prepare("full", data_dir=data, manual_dir=str(manual)))
    got = {s: sorted(map(frame_number, (e["name"] for e in exs))) for s, exs in examples.items()}
    assert got["train"] == [frame_number(n) for n in DRIVE[:12]]
    assert got["validation"] == [frame_number(n) for n in DRIVE[12:16]]
    assert got["test"] == [frame_number(n) for n in DRIVE[16:20]]
    assert "recording drive-stream1-000_* (20 frames): train frames 21..54 (12)" in (
        capsys.readouterr().out
    )
    # Same data dir, another recording: prepared again, not silently reused.
    other = tmp_path / "other"
    recording_tree(tmp_path, [f"other/take_{i}.png" for i in range(10)])
    builder = lyft.prepare("full", data_dir=data, manual_dir=str(other))
    assert "preparing it again" in capsys.readouterr().out
    assert sum(s.num_examples for s in builder.info.splits.values()) == 10
    # Unchanged: reused as it is.
    lyft.prepare("full", data_dir=data, manual_dir=str(other))
    assert "preparing it again" not in capsys.readouterr().out
