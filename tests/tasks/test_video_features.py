"""Users' own videos: per-frame feature arrays plus a captions JSON (both accepted layouts), learned to
near-perfect captions on a tiny set; a user's clip through `inspect-memory --video`; every bad input one
line naming the file and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train
from tests.helpers import one_line_error, write_feature_videos

pytest.importorskip("pycocoevalcap")
ROOT = Path(__file__).resolve().parent.parent.parent
SMOKE = ROOT / "tests" / "smoke" / "captioner-video_features.yaml"
SHAPES_SMOKE = ROOT / "tests" / "smoke" / "captioner-shapes_captions.yaml"


def _config(folder: Path, **model: object) -> dict:
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"] = {"features": str(folder), "captions": str(folder / "captions.json")}
    raw["model"].update(model)
    return raw


def test_a_captioner_learns_users_feature_videos_to_near_perfect_captions(tmp_path: Path) -> None:
    write_feature_videos(tmp_path / "videos", 80, seed=1)
    raw = _config(
        tmp_path / "videos", frame_dim=16, hidden_size=32, embedding_dim=16, attention_dim=16, dropout=0.0
    )
    raw["train"].update(epochs=25, lr=0.01, batch_size=8)
    summary = train(build_config(raw), tmp_path / "run")
    test = summary.test.metrics
    assert test["bleu1"] > 0.95 and test["bleu4"] > 0.8, test  # untrained: BLEU-4 near 0


def test_the_msr_vtt_layout_reads_like_the_simple_one(tmp_path: Path) -> None:
    from memtool.tasks.video.features import read_caption_file

    write_feature_videos(tmp_path, 8)
    simple = read_caption_file(tmp_path / "captions.json")
    entries = json.loads((tmp_path / "captions.json").read_text())["videos"]
    msr_vtt = {  # as MSR-VTT ships it: a numeric "id" beside the "video_id" that names the file
        "info": {"year": 2016},
        "videos": [
            {"id": i, "video_id": e["id"], "category": 9, "split": e["split"].replace("val", "validate")}
            for i, e in enumerate(entries)
        ],
        "sentences": [
            {"video_id": e["id"], "caption": c, "sen_id": 7} for e in entries for c in e["captions"]
        ],
    }
    (tmp_path / "videodatainfo.json").write_text(json.dumps(msr_vtt))
    assert read_caption_file(tmp_path / "videodatainfo.json") == simple
    assert {split for split, _ in simple.values()} == {"train", "valid", "test"}


def _write_captions(folder: Path, videos: list) -> None:
    (folder / "captions.json").write_text(json.dumps({"videos": videos}))


def _save_npz(path: Path) -> None:
    with path.open("wb") as file:  # numpy.savez would add .npz to a name
        np.savez(file, features=np.zeros((3, 6)))


def _duplicate_first_video(folder: Path) -> None:
    videos = json.loads((folder / "captions.json").read_text())["videos"]
    _write_captions(folder, [*videos, videos[0]])


@pytest.mark.parametrize(
    ("break_it", "fragments"),
    [
        (lambda d: (d / "captions.json").write_text("{not json"), ["data.captions", "not valid JSON"]),
        (lambda d: (d / "video3.npy").unlink(), ["data.features", "video3.npy not found"]),
        (
            lambda d: np.save(d / "video3.npy", np.zeros((3, 7), np.float32)),
            ["feature dims differ", "video 'video3' has 7"],
        ),
        (lambda d: np.save(d / "video3.npy", np.zeros(5, np.float32)), ["video3.npy has shape (5,)"]),
        (
            lambda d: (d / "video3.npy").write_text("hello"),
            ["video3.npy is not a .npy array", "no .npy header"],
        ),
        (
            lambda d: _write_captions(d, [{"id": "video0", "split": "dev", "captions": ["a"]}]),
            ["split 'dev'", "train, valid or test"],
        ),
        (
            lambda d: _write_captions(d, [{"id": "video0", "split": "Train", "captions": ["a b"]}]),
            ["lists no valid video"],  # "Train" is train
        ),
        (lambda d: _duplicate_first_video(d), ["repeats the id 'video0'"]),
        (
            lambda d: _write_captions(d, [{"id": "../video0", "split": "train", "captions": ["a"]}]),
            ["has id '../video0'"],
        ),
        (
            lambda d: _write_captions(d, [{"id": "video0", "split": "train", "captions": ["a b", "!!"]}]),
            ["a caption without a word: '!!'"],
        ),
        (lambda d: _save_npz(d / "video3.npy"), ["video3.npy is a .npz archive"]),
        (lambda d: np.save(d / "video3.npy", np.zeros((3, 0), np.float32)), ["shape (3, 0)"]),
        (lambda d: np.save(d / "video3.npy", np.zeros((3, 6), np.complex64)), ["complex64"]),
        (lambda d: np.save(d / "video3.npy", np.full((3, 6), 1e39)), ["out-of-range values"]),
    ],
)
def test_bad_feature_data_is_one_line_naming_the_file(tmp_path: Path, break_it, fragments: list[str]) -> None:
    folder = tmp_path / "videos"
    write_feature_videos(folder, 8)
    break_it(folder)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(folder)))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    one_line_error(result, *fragments)


def test_a_missing_features_folder_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path / "nowhere")))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "run")])
    one_line_error(result, "data.features", "not found")


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("shapes") / "run"
    train(build_config(yaml.safe_load(SHAPES_SMOKE.read_text())), run)
    return run


@pytest.mark.parametrize("layout", ["channels_first_uint8", "channels_last_float"])
def test_inspect_captions_a_users_clip_from_a_npy(
    shapes_run: Path, tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_videos(*args: object, **kwargs: object) -> None:
        raise AssertionError("a user's clip needs no generated videos")

    monkeypatch.setattr("memtool.tasks.video.shapes_task.generate_shapes", no_videos)
    size = yaml.safe_load(SHAPES_SMOKE.read_text())["task"]["size"]
    rng = np.random.default_rng(0)
    if layout == "channels_first_uint8":
        clip = rng.integers(0, 256, (6, 3, size, size), dtype=np.uint8)
    else:
        clip = rng.random((6, size, size, 3), dtype=np.float32)
    np.save(tmp_path / "clip.npy", clip)
    result = CliRunner().invoke(
        app, ["inspect-memory", str(shapes_run), "--video", str(tmp_path / "clip.npy"), "--json"]
    )
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["title"].startswith("clip.npy · 6 frames")
    assert len(view["strips"][0]["images"]) == 6 and len(view["panels"][0]["columns"]) == 6
    assert all(abs(sum(row) - 1) < 1e-4 for row in view["panels"][0]["values"])
    assert not any(note.startswith("reference:") for note in view["notes"])  # none for a user's clip


@pytest.mark.parametrize(
    ("clip", "fragments"),
    [
        (np.zeros((4, 3, 9, 9), np.uint8), ["shape (4, 3, 9, 9)", "this run's videos are (K, 3, 16, 16)"]),
        (np.zeros((4, 3, 16, 16), np.int64), ["values of type int64"]),
        (np.full((4, 3, 16, 16), np.nan, np.float32), ["NaN"]),
        (None, ["no such file"]),
        (np.full((4, 3, 16, 16), 255.0, np.float32), ["floats from 255 to 255", "uint8"]),
        (np.zeros((4, 3, 16, 16), np.complex64), ["complex64"]),
        (np.zeros((4, 9, 9, 3), np.uint8), ["shape (4, 9, 9, 3)"]),  # the file's own shape, as given
        (np.array([{"a": 1}], dtype=object), ["not a .npy array (it holds Python objects)"]),
    ],
)
def test_a_bad_video_file_is_one_line(shapes_run: Path, tmp_path: Path, clip, fragments: list[str]) -> None:
    path = tmp_path / "clip.npy"
    if clip is not None:
        np.save(path, clip)
    result = CliRunner().invoke(app, ["inspect-memory", str(shapes_run), "--video", str(path)])
    one_line_error(result, "--video", *fragments)


def test_video_with_example_or_split_is_one_line(shapes_run: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "clip.npy", np.zeros((4, 3, 16, 16), np.uint8))
    for extra in (["--example", "3"], ["--split", "valid"]):
        result = CliRunner().invoke(
            app, ["inspect-memory", str(shapes_run), "--video", str(tmp_path / "clip.npy"), *extra]
        )
        one_line_error(result, "--video", "--example and --split")


def test_a_trained_feature_run_scores_a_test_only_file_and_refuses_other_feature_dims(tmp_path: Path) -> None:
    write_feature_videos(tmp_path / "videos", 12)
    raw = _config(tmp_path / "videos")
    raw["data"]["max_frames"] = 2
    train(build_config(raw), tmp_path / "run")
    entries = json.loads((tmp_path / "videos" / "captions.json").read_text())["videos"]
    test_only = {"videos": [e for e in entries if e["split"] == "test"]}
    (tmp_path / "test_only.json").write_text(json.dumps(test_only))
    scored = CliRunner().invoke(
        app,
        ["eval", str(tmp_path / "run"), "--json", "--set", f"data.captions={tmp_path / 'test_only.json'}"],
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["metrics"]["examples"] == sum(e["split"] == "test" for e in entries)

    write_feature_videos(tmp_path / "wider", 12, dims=9)
    other = CliRunner().invoke(
        app,
        ["eval", str(tmp_path / "run"), "--set", f"data.features={tmp_path / 'wider'}",
         "--set", f"data.captions={tmp_path / 'wider' / 'captions.json'}"],
    )  # fmt: skip
    one_line_error(other, "data.features", "dim 9", "trained on 6")

    clip = np.arange(5 * 6, dtype=np.int64).reshape(5, 6)  # integer features are features too
    np.save(tmp_path / "clip.npy", clip)
    (tmp_path / "videos").rename(tmp_path / "moved")  # a user's clip needs the checkpoint, not the data
    shown = CliRunner().invoke(
        app, ["inspect-memory", str(tmp_path / "run"), "--video", str(tmp_path / "clip.npy"), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    view = json.loads(shown.stdout)
    assert len(view["panels"][0]["columns"]) == 2 and view["strips"] == []  # sampled to max_frames
    without_data = CliRunner().invoke(app, ["inspect-memory", str(tmp_path / "run")])
    one_line_error(without_data, "data.features", "not found")
