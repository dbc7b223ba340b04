import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from memtool.checkpoint import load_checkpoint
from memtool.config import build_config, load_config
from memtool.engine import train
from memtool.errors import TrainingDiverged, UserError
from memtool.optim import clip_gradients, spectral_if_over
from memtool.render import TrainProgress
from memtool.train_state import SilentObserver, TrainState
from tests.helpers import tiny_config


def untimed(rows: list[dict]) -> list[dict]:
    """Records without what depends on the clock."""
    return [{k: v for k, v in r.items() if k not in ("elapsed", "examples_per_second")} for r in rows]


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class CrashAt(SilentObserver):
    """Dies like a SIGKILL would: abruptly, without the engine saving anything."""

    def __init__(self, step: int) -> None:
        self.step = step

    def stepped(self, progress, loss) -> None:
        if progress.restart == 1 and progress.step == self.step:
            raise SystemExit("killed")


def test_a_run_resumed_after_a_crash_ends_exactly_like_an_uninterrupted_one(tmp_path: Path) -> None:
    # two restarts, a warmup phase, LR decay and random noise: every piece of state must come back
    raw = tiny_config(
        train={
            "epochs": 2,
            "checkpoint_every_steps": 2,
            "restarts": 2,
            "start_phase": {"mode": "linear_start", "epochs": 1},
            "lr_decay": {"every_epochs": 1},
        }
    )
    config = build_config(raw)
    whole = train(config, tmp_path / "whole")
    with pytest.raises(SystemExit):
        train(config, tmp_path / "crashed", observer=CrashAt(step=11))  # mid-epoch 2 of restart 2
    saved = load_checkpoint(tmp_path / "crashed" / "last.pt")
    assert saved["training"]["progress"]["restart"] == 1
    assert saved["training"]["progress"]["batches_done"] > 0  # a mid-epoch checkpoint
    resumed = train(config, tmp_path / "crashed", resume=True)

    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(tmp_path / "whole" / name), load_checkpoint(tmp_path / "crashed" / name)
        assert _states_equal(a["model_state"], b["model_state"]), name
    assert resumed.test.metrics == whole.test.metrics
    lines = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert untimed(lines("whole")) == untimed(lines("crashed"))


def test_run_directory_holds_config_metrics_checkpoints_and_versions(tmp_path: Path) -> None:
    summary = train(build_config(tiny_config()), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "best.pt", "last.pt", "versions.json", "summary.json"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml").to_dict() == build_config(tiny_config()).to_dict()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert "torch" in json.loads((run / "versions.json").read_text())
    assert summary.test.metrics["examples"] == 50
    # where and on how many threads it trained, so its train_seconds can be compared with another run's
    written = json.loads((run / "summary.json").read_text())
    assert (written["device"], written["threads"]) == ("cpu", torch.get_num_threads())


def test_refuses_to_overwrite_a_run_or_resume_a_changed_config(tmp_path: Path) -> None:
    train(build_config(tiny_config()), tmp_path / "run")
    with pytest.raises(UserError, match="already holds a run; pass --resume"):
        train(build_config(tiny_config()), tmp_path / "run")
    with pytest.raises(UserError, match=r"cannot resume with a different config; changed: model\.hops"):
        train(build_config(tiny_config(model={"hops": 3})), tmp_path / "run", resume=True)
    with pytest.raises(UserError, match="nothing to resume"):
        train(build_config(tiny_config()), tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty").exists()


def test_resuming_a_run_another_process_is_starting_names_that_process(tmp_path: Path) -> None:
    """Before its first last.pt, "nothing to resume; drop --resume" would send the user into the lock."""
    from memtool.run_dir import RunDirectory

    starting = RunDirectory(tmp_path / "run")
    starting.claim()  # as a train that has not saved yet: the marker and the lock, no checkpoint
    try:
        with pytest.raises(UserError, match=r"another memtool train \(pid \d+\) is writing this run"):
            train(build_config(tiny_config()), tmp_path / "run", resume=True)
        with pytest.raises(UserError, match="this run has saved no checkpoint yet"):
            load_checkpoint(tmp_path / "run")
    finally:
        starting.release()
    with pytest.raises(UserError, match="nothing to resume"):  # the lock gone, and still no last.pt
        train(build_config(tiny_config()), tmp_path / "run", resume=True)
    assert (tmp_path / "run").is_dir()  # a folder it did not create is left as it was


def test_a_run_saved_before_a_config_key_existed_resumes(tmp_path: Path) -> None:
    """A newer memtool adds keys with defaults (data.length_buckets, train.precision): no change."""
    from memtool.checkpoint import save_checkpoint

    config = build_config(tiny_config(train={"max_steps": 2}))
    train(config, tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    del saved["config"]["data"]["length_buckets"], saved["config"]["train"]["precision"]
    save_checkpoint(tmp_path / "run" / "last.pt", {k: v for k, v in saved.items() if k != "path"})
    summary = train(build_config(tiny_config(train={"max_steps": 4})), tmp_path / "run", resume=True)
    assert summary.steps == 4


def test_max_steps_caps_training(tmp_path: Path) -> None:
    summary = train(build_config(tiny_config(train={"max_steps": 3, "epochs": 50})), tmp_path / "run")
    assert summary.steps == 3


def test_a_run_capped_mid_epoch_trains_on_to_the_uncapped_result(tmp_path: Path) -> None:
    """max_steps stops inside an epoch; raising it goes on from that batch, not from the next epoch."""
    whole = tiny_config(model={"random_noise": 0.0})
    train(build_config(whole), tmp_path / "whole")
    capped = tmp_path / "capped"
    train(build_config(tiny_config(model={"random_noise": 0.0}, train={"max_steps": 3})), capped)
    progress = load_checkpoint(capped / "last.pt")["training"]["progress"]
    assert progress["step"] == 3 and progress["batches_done"] == 3 and progress["epoch"] == 0
    train(build_config(whole), capped, resume=True)
    a, b = (load_checkpoint(run / "last.pt")["model_state"] for run in (tmp_path / "whole", capped))
    assert _states_equal(a, b)


def test_nan_loss_stops_training_without_saving_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memtool.tasks.babi.task import BabiTask

    original = BabiTask.loss
    calls = {"n": 0}

    def poisoned(self, output, batch):
        calls["n"] += 1
        loss, counts = original(self, output, batch)
        return (loss * math.nan if calls["n"] == 5 else loss), counts

    monkeypatch.setattr(BabiTask, "loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan .* step 5"):
        train(build_config(tiny_config(train={"checkpoint_every_steps": 2})), tmp_path / "run")
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert saved["training"]["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in saved["model_state"].values())


def test_reading_the_steps_every_few_steps_changes_nothing(tmp_path: Path, monkeypatch) -> None:
    """On a GPU the loop reads its numbers every 16 steps, not after each (no host-device wait per
    step): the records, the checkpoints and the divergence check must be the same as reading each step."""
    from memtool.engine import Trainer
    from memtool.tasks.babi.task import BabiTask

    config = build_config(tiny_config(train={"epochs": 3, "checkpoint_every_steps": 3}))
    every_step = train(config, tmp_path / "each")
    trainer = Trainer(config, tmp_path / "every4")
    trainer.read_every = 4
    every_four = trainer.run()
    assert every_four.test.metrics == every_step.test.metrics
    lines = lambda run: [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert untimed(lines("each")) == untimed(lines("every4"))
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(tmp_path / "each" / name), load_checkpoint(tmp_path / "every4" / name)
        assert _states_equal(a["model_state"], b["model_state"]), name

    original, calls = BabiTask.loss, {"n": 0}

    def poisoned(self, output, batch):
        loss, counts = original(self, output, batch)
        calls["n"] += 1
        return (loss * math.nan if calls["n"] == 5 else loss), counts

    monkeypatch.setattr(BabiTask, "loss", poisoned)
    trainer = Trainer(build_config(tiny_config(train={"checkpoint_every_steps": 4})), tmp_path / "nan")
    trainer.read_every = 4
    with pytest.raises(TrainingDiverged, match=r"loss became nan .* step 5"):
        trainer.run()
    saved = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert saved["training"]["progress"]["step"] == 4  # the poisoned steps 5-8 were never saved
    assert all(torch.isfinite(v).all() for v in saved["model_state"].values())


def test_warmup_ends_on_plateau_or_after_its_epochs(tmp_path: Path) -> None:
    raw = tiny_config(train={"epochs": 1, "start_phase": {"mode": "linear_start", "epochs": 3}})
    train(build_config(raw), tmp_path / "fixed")
    phases = [json.loads(x)["phase"] for x in (tmp_path / "fixed" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["linear_start", "linear_start", "linear_start", "main"]
    phase = {"mode": "linear_start", "epochs": 10, "until_plateau": True}
    raw = tiny_config(train={"epochs": 1, "lr": 1e-9, "start_phase": phase})
    train(build_config(raw), tmp_path / "plateau")
    phases = [
        json.loads(x)["phase"] for x in (tmp_path / "plateau" / "metrics.jsonl").read_text().splitlines()
    ]
    assert phases.count("linear_start") < 10 and phases[-1] == "main"


def test_best_of_restarts_is_kept(tmp_path: Path) -> None:
    summary = train(build_config(tiny_config(train={"restarts": 3, "epochs": 1})), tmp_path / "run")
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["restart"] for r in records] == [0, 1, 2]
    best = min(records, key=lambda r: (r["valid_error"], r["valid_loss"]))
    assert summary.best_restart == best["restart"]
    assert summary.valid.metrics["error"] == pytest.approx(best["valid_error"])

    # summary.json: every restart's best validation, and its best model's validation and test scores
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [r["restart"] for r in written["restarts"]] == [0, 1, 2]
    assert [r["seed"] for r in written["restarts"]] == [summary.seed + r for r in range(3)]
    for entry in written["restarts"]:
        own = [r["valid_error"] for r in records if r["restart"] == entry["restart"]]
        assert entry["best_valid_error"] == pytest.approx(min(own))
        assert entry["valid"]["metrics"]["error"] == pytest.approx(min(own))
        saved = load_checkpoint(tmp_path / "run" / f"best-restart-{entry['restart']}.pt")
        assert saved["restart"] == entry["restart"]
    kept = written["restarts"][summary.best_restart]
    assert kept["test"]["metrics"] == pytest.approx(written["test"]["metrics"])
    assert kept["valid"]["metrics"] == pytest.approx(written["valid"]["metrics"])


def test_clipping_is_per_weight_matrix_or_global() -> None:
    a = torch.nn.Parameter(torch.zeros(3))
    b = torch.nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.full((3,), 10.0), torch.full((4,), 0.1)
    clip_gradients([a, b], 1.0, "per_matrix")
    assert a.grad.norm().item() == pytest.approx(1.0, rel=1e-4)
    assert b.grad.norm().item() == pytest.approx(0.2)  # already under the cap: untouched
    a.grad, b.grad = torch.full((3,), 10.0), torch.full((4,), 0.1)
    clip_gradients([a, b], 1.0, "global")
    assert torch.cat([a.grad, b.grad]).norm().item() == pytest.approx(1.0, rel=1e-4)


def test_spectral_clipping_caps_the_largest_singular_value() -> None:
    matrix = torch.nn.Parameter(torch.zeros(4, 3))
    matrix.grad = torch.cat([torch.diag(torch.tensor([4.0, 3.0, 0.0])), torch.zeros(1, 3)])  # σ = 4, 3, 0
    clip_gradients([matrix], 2.0, "per_matrix_spectral")
    assert torch.linalg.matrix_norm(matrix.grad, ord=2).item() == pytest.approx(2.0, rel=1e-4)
    assert matrix.grad.norm().item() == pytest.approx(2.5, rel=1e-4)  # Frobenius would have given 2.0


@pytest.mark.parametrize("replicas", [False, True])
def test_the_spectral_norm_picked_without_reading_the_device_clips_as_the_host_path(replicas: bool) -> None:
    """On a GPU the spectral clip must not wait for the device (``where``, no ``if``): the same scales,
    with replicas over and under the cap in one stacked gradient too."""
    generator = torch.Generator().manual_seed(0)
    shape = (3, 5, 4) if replicas else (5, 4)
    big, small = torch.randn(shape, generator=generator) * 10, torch.full(shape, 0.01)
    mixed = torch.stack([big[0], small[0], big[1]]) if replicas else big
    for grad in (big, small, mixed):
        norm = torch.linalg.vector_norm(grad, dim=(-2, -1))
        scales = [
            (1.0 / spectral_if_over(grad, norm, 1.0, sync_free=free)).clamp(max=1.0) for free in (False, True)
        ]
        assert torch.allclose(*scales)
    under = torch.linalg.vector_norm(small, dim=(-2, -1))
    assert torch.equal(spectral_if_over(small, under, 1.0), under)  # under the cap: no SVD needed


def test_a_tiny_model_learns_a_tiny_task_perfectly(tmp_path: Path) -> None:
    # one question per generated story: 1-3 sentences, answerable from the person's latest move
    raw = tiny_config(
        model={"embedding_dim": 20, "hops": 1, "random_noise": 0.0},
        data={
            "source": "generated",
            "generator": {"tasks": [1], "train_stories": 1000, "test_stories": 100, "questions_per_story": 1},
        },
        train={"epochs": 15, "lr": 0.01, "optimizer": "adam", "loss_reduction": "mean"},
    )
    summary = train(build_config(raw), tmp_path / "run")
    assert summary.test.metrics["error"] == 0.0
    assert summary.test.metrics["examples"] == 100


def test_no_validation_data_writes_strict_json(tmp_path: Path) -> None:
    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    train(build_config(tiny_config(data={"validation_fraction": 0.0})), tmp_path / "run")
    for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines():
        assert json.loads(line, parse_constant=refuse)["valid_error"] is None
    json.loads((tmp_path / "run" / "summary.json").read_text(), parse_constant=refuse)


def test_clipping_by_value_clamps_each_element_before_the_norm() -> None:
    a = torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.tensor([-20.0, 0.5, 30.0])
    clip_gradients([a], None, max_value=10.0)
    assert a.grad.tolist() == [-10.0, 0.5, 10.0]
    a.grad = torch.tensor([-20.0, 0.0, 30.0])
    clip_gradients([a], 1.0, "per_matrix", max_value=10.0)
    assert a.grad.tolist() == pytest.approx([-(2**-0.5), 0.0, 2**-0.5], rel=1e-4)


def test_validation_every_n_steps_logs_between_epochs_and_resumes_exactly(tmp_path: Path) -> None:
    from tests.test_contract import CrashAt

    raw = tiny_config(
        train={"epochs": 2, "batch_size": 16, "eval_every_steps": 4, "checkpoint_every_steps": 3}
    )
    config = build_config(raw)
    whole = train(config, tmp_path / "whole")
    records = [json.loads(x) for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    per_epoch = steps[-1] // 2
    assert steps == sorted({*range(4, 2 * per_epoch, 4), per_epoch, 2 * per_epoch})
    assert any(isinstance(r["epoch"], float) for r in records)  # mid-epoch records carry a fractional epoch
    with pytest.raises(SystemExit):
        train(config, tmp_path / "crashed", observer=CrashAt(step=10))  # after the step-8 validation
    train(config, tmp_path / "crashed", resume=True)
    again = [json.loads(x) for x in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert untimed(again) == untimed(records)
    assert whole.steps == 2 * per_epoch


def test_adam_rmsprop_and_adadelta_train(tmp_path: Path) -> None:
    for name, lr in (("adamw", 0.01), ("rmsprop", 0.001), ("adadelta", 1.0)):
        config = build_config(tiny_config(train={"optimizer": name, "lr": lr, "max_steps": 3}))
        summary = train(config, tmp_path / name)
        assert summary.steps == 3
        assert load_checkpoint(tmp_path / name / "last.pt")["training"]["optimizer"]["state"]


def test_tensorboard_event_files_hold_every_validation(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(build_config(tiny_config(train={"tensorboard": True, "epochs": 2})), tmp_path / "run")
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "restart-1"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/error", "valid/loss", "valid/error", "lr"} <= tags
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = events.Scalars("valid/loss")
    assert [e.step for e in logged] == [r["step"] for r in records]
    assert [e.value for e in logged] == pytest.approx([r["valid_loss"] for r in records])


def _with_penalty(monkeypatch: pytest.MonkeyPatch, value: float) -> None:
    from memtool.models.memn2n import MemN2N

    original = MemN2N.forward

    def with_penalty(self, **inputs):
        output = original(self, **inputs)
        output.aux_losses["penalty"] = torch.tensor(value)  # a constant: known mean, no gradient
        return output

    monkeypatch.setattr(MemN2N, "forward", with_penalty)


def test_a_models_auxiliary_loss_is_logged_on_its_own_beside_the_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train_loss is the task's loss, as valid_loss is (the captioner's caption loss); the model's own
    loss is train_<name> beside it. A constant penalty changes no gradient, so the task's loss is the
    same as without it."""
    config = build_config(tiny_config(train={"epochs": 1, "loss_reduction": "mean"}))
    train(config, tmp_path / "plain")
    _with_penalty(monkeypatch, 0.5)
    train(config, tmp_path / "penalised")
    plain, penalised = (
        json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[0])
        for run in ("plain", "penalised")
    )
    assert penalised["train_penalty"] == pytest.approx(0.5) and "train_penalty" not in plain
    assert penalised["train_loss"] == pytest.approx(plain["train_loss"], rel=1e-6)


def test_a_models_own_loss_that_is_not_finite_stops_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_penalty(monkeypatch, math.nan)
    with pytest.raises(TrainingDiverged, match="the model's penalty loss became nan at restart 0"):
        train(build_config(tiny_config(train={"epochs": 1})), tmp_path / "run")
    assert not (tmp_path / "run" / "best.pt").exists()


def test_a_restart_in_turn_times_its_speed_from_its_own_start() -> None:
    """The next restart's first window starts when it does: its first record's examples per second
    must not divide by the seconds of the restarts before it."""
    done = TrainState(0, elapsed=120.0, window_start=100.0, examples=5000)
    after = done.next_restart()
    assert after.restart == 1 and after.window_start == after.restart_start == 120.0
    assert after.window_examples == 0 and after.examples == 0


@pytest.mark.parametrize("stacked", [False, True])
def test_ctrl_c_while_scoring_stops_at_once_and_resume_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stacked: bool
) -> None:
    """Scoring a finished restart has no steps to stop between (minutes on a big test split): the first
    Ctrl-C stops it at once, with last.pt saved, and --resume scores what was not scored."""
    import os
    import signal

    from memtool.interrupts import Interrupted
    from memtool.tasks.babi.task import BabiTask

    config = build_config(tiny_config(train={"epochs": 2, "restarts": 2, "stack_restarts": stacked}))
    whole = train(config, tmp_path / "whole")
    evaluate_part = BabiTask.evaluate_part  # what the engine scores a split with, part by part

    def ctrl_c_on_test(self, model, split, batch_size, rank, world):  # type: ignore[no-untyped-def]
        if split == "test":
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs before the next bytecode
        return evaluate_part(self, model, split, batch_size, rank, world)

    monkeypatch.setattr(BabiTask, "evaluate_part", ctrl_c_on_test)
    with pytest.raises(Interrupted):
        train(config, tmp_path / "stopped")
    monkeypatch.undo()
    progress = load_checkpoint(tmp_path / "stopped" / "last.pt")["training"]["progress"]
    # in turn: stopped while scoring the first restart; stacked: both trained, neither scored
    assert progress["restart"] == (1 if stacked else 0)
    assert not progress["finished"] and progress["scored"] == {}
    assert not (tmp_path / "stopped" / "summary.json").exists()
    console = Console(file=io.StringIO(), width=200)
    resumed = train(config, tmp_path / "stopped", resume=True, observer=TrainProgress(console))
    assert resumed.test.metrics == whole.test.metrics
    # stacked, both restarts were trained: no epoch table header over no epochs; in turn, the second trains
    assert ("valid loss" in console.file.getvalue()) == (not stacked)
    untimed_scores = lambda summary: {  # noqa: E731
        restart: {k: v for k, v in scores.items() if k != "train_seconds"}
        for restart, scores in summary.restarts.items()
    }
    assert untimed_scores(resumed) == untimed_scores(whole)
