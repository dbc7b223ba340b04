"""scripts/caption_table.py's ``--reached``: the first epoch a run's validation score reached a value."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_script


@pytest.fixture(scope="module")
def table() -> ModuleType:
    return load_script("caption_table")


def test_the_first_epoch_at_a_validation_score(table: ModuleType, tmp_path: Path) -> None:
    scores = [0.2, 0.95, 0.5, 0.97]  # reached at epoch 2, lost, reached again: the first counts
    records = [{"epoch": epoch, "valid_bleu4": score} for epoch, score in enumerate(scores, 1)]
    records.insert(1, {"epoch": 1, "train_loss": 1.0})  # a record without validation is skipped
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert table.first_epoch(tmp_path, "bleu4", 0.9) == 2
    assert table.first_epoch(tmp_path, "bleu4", 0.99) is None
    assert table.reached_target("bleu4=0.9") == ("bleu4", 0.9)
    with pytest.raises(SystemExit) as stopped:
        table.reached_target("bleu4")
    assert stopped.value.code == 2


def test_a_loss_is_reached_from_above_and_only_the_kept_restart_counts(
    table: ModuleType, tmp_path: Path
) -> None:
    records = [
        {"restart": 0, "epoch": 1, "valid_loss": 3.0},
        {"restart": 0, "epoch": 2, "valid_loss": 1.0},
        {"restart": 1, "epoch": 0.5, "valid_loss": None},  # an empty validation split logs null
        {"restart": 1, "epoch": 1.5, "valid_loss": 0.5},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert table.first_epoch(tmp_path, "loss", 1.5) == 2
    assert table.first_epoch(tmp_path, "loss", 1.5, restart=1) == 1.5
    with pytest.raises(SystemExit) as stopped:
        table.reached_target("bleu1=0.5")  # not logged at each validation
    assert stopped.value.code == 2


def test_runs_of_another_layout_or_encoder_are_pooled_apart(table: ModuleType) -> None:
    def setting(model: dict, task: dict) -> str:
        return table.setting(Path("run"), {"model": model, "task": task})

    soft = {"name": "captioner", "attention": "soft", "reg_lambda": 1.0, "reg_tau": "auto"}
    plain = setting(soft, {"name": "shapes_captions"})
    slideshow = setting(soft, {"name": "shapes_captions", "layout": "slideshow"})
    encoded = setting({**soft, "temporal_encoder": True}, {"name": "shapes_captions"})
    assert len({plain, slideshow, encoded}) == 3 and plain == "soft attention, λ = 1.0, τ = auto"
    with pytest.raises(SystemExit) as refused:
        setting({"name": "memn2n"}, {"name": "babi"})
    assert refused.value.code == 2


def test_runs_that_differ_in_anything_but_seed_and_execution_are_labelled_apart(table: ModuleType) -> None:
    def config(seed: int, frames: int, threads: int) -> dict:
        model = {"name": "captioner", "attention": "soft", "reg_lambda": 1.0, "reg_tau": "auto"}
        return {"seed": seed, "model": model, "task": {"frames": frames}, "train": {"threads": threads}}

    runs = [Path("a"), Path("b"), Path("c")]
    configs = dict(zip(runs, [config(0, 8, 1), config(1, 8, 2), config(2, 12, 1)], strict=True))
    found = table.labels(configs)
    assert found[runs[0]] == found[runs[1]] == "soft attention, λ = 1.0, τ = auto (task.frames=8)"
    assert found[runs[2]] == "soft attention, λ = 1.0, τ = auto (task.frames=12)"
    alike = table.labels({run: configs[run] for run in runs[:2]})
    assert alike[runs[0]] == "soft attention, λ = 1.0, τ = auto"  # alike: no keys named


def test_two_settings_are_compared_seed_by_seed(
    table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    penalised = [{"seed": s, "bleu4": v} for s, v in ((0, 0.9), (1, 0.8), (2, 0.7), (9, 0.1))]
    plain = [{"seed": s, "bleu4": v} for s, v in ((2, 0.6), (1, 0.9), (0, 0.8))]  # seed 9 has no pair
    table.print_paired(("λ = 1", penalised), ("λ = 0", plain), [("bleu4", "BLEU-4", 3)])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    # differences by seed: +0.1, −0.1, +0.1
    assert row == "| BLEU-4 | 3 | +0.0333 | 2 | 1 | 0.50 | 0.667 | 1.000 |", row


def test_holm_adjusts_the_named_metrics_together_and_leaves_the_others_blank(
    table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    first = [{"seed": s, "bleu4": 0.5 + 0.01 * s, "cider": 5.0 + s, "coverage_error": 1.0} for s in range(6)]
    second = [{"seed": s, "bleu4": 0.5, "cider": 5.0 - s, "coverage_error": 2.0 + s} for s in range(6)]
    columns = [("bleu4", "BLEU-4", 3), ("cider", "CIDEr-D", 3), ("coverage_error", "coverage error", 3)]
    table.print_paired(("λ = 1", first), ("λ = 0", second), columns, ["bleu4", "cider"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-5].endswith("| p (sign flip) | Holm p (t) | Holm p (sign flip) |")
    cells = [[cell.strip() for cell in line.split("|")[1:-1]] for line in lines[-3:]]
    rows = {row[0]: row for row in cells}
    # BLEU-4's and CIDEr-D's differences are 0, 0.01, …, 0.05 and 0, 2, …, 10: the same t and p, so
    # Holm doubles the smaller and raises the other to it: both twice their own p
    for name in ("BLEU-4", "CIDEr-D"):
        assert float(rows[name][8]) == pytest.approx(min(1.0, 2 * float(rows[name][6])), abs=2e-3)
        assert float(rows[name][9]) == pytest.approx(min(1.0, 2 * float(rows[name][7])), abs=2e-3)
    assert rows["coverage error"][8:] == ["", ""]  # not one of the claim's metrics


def test_a_paired_comparison_refuses_what_it_cannot_pair(table: ModuleType) -> None:
    twice = [{"seed": 0, "bleu4": 0.5}, {"seed": 0, "bleu4": 0.9}]  # a run given twice, say
    for first, second in (
        (("λ = 1", twice), ("λ = 0", [{"seed": 0, "bleu4": 0.4}])),
        (("λ = 1", [{"seed": 0, "bleu4": 0.5}]), ("λ = 0", [{"seed": 1, "bleu4": 0.4}])),  # no shared seed
    ):
        with pytest.raises(SystemExit) as stopped:
            table.check_pairs(first, second)
        assert stopped.value.code == 2


def test_a_paired_row_without_spread_shows_dashes_not_nan(
    table: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    alike = [{"seed": s, "bleu4": v} for s, v in ((0, 0.9), (1, 0.8), (2, 0.3))]
    lower = [{"seed": s, "bleu4": v} for s, v in ((0, 0.8), (1, 0.7), (2, 0.2))]  # 0.1 less, up to rounding
    table.print_paired(("λ = 1", alike), ("λ = 0", lower), [("bleu4", "BLEU-4", 3)])
    row = capsys.readouterr().out.strip().splitlines()[-1]
    assert row == "| BLEU-4 | 3 | +0.1000 | 3 | 0 | – | – | 0.250 |", row


def test_rescored_metrics_are_cached_until_the_checkpoint_or_the_overrides_change(
    table: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    import memtool.build
    import memtool.checkpoint

    scored: list[list[str]] = []

    def restore(checkpoint: object, overrides: list[str]) -> tuple:
        class Task:
            def evaluate(self, model: object, split: str, batch_size: int) -> SimpleNamespace:
                scored.append(overrides)
                return SimpleNamespace(metrics={"bleu4": 0.1 * len(scored)})

        return SimpleNamespace(train=SimpleNamespace(eval_batch_size=8)), Task(), None

    monkeypatch.setattr(memtool.checkpoint, "load_checkpoint", lambda path: {})
    monkeypatch.setattr(memtool.build, "restore", restore)
    run, cache = tmp_path / "run", tmp_path / "cache"
    run.mkdir()
    (run / "best.pt").write_bytes(b"a checkpoint")
    seen = ["data.test_pairs=seen"]
    first = table.rescore(run, seen, cache)
    assert table.rescore(run, seen, cache) == first and len(scored) == 1  # read back
    assert table.rescore(run, ["data.test_videos=10"], cache) != first  # other overrides: scored
    (run / "best.pt").write_bytes(b"a later, better checkpoint")
    assert table.rescore(run, seen, cache) != first and len(scored) == 3  # a new best.pt: scored again
    assert table.rescore(run, seen) != first and len(scored) == 4  # without a cache: always scored
