"""``train.stack_restarts``: restarts trained together as replicas of one model end where restarts trained
one after another end, resume exactly after a kill, and leave ordinary checkpoints."""

import copy
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from memtool.build import build_task, create_model, model_arguments, model_from_checkpoint
from memtool.checkpoint import load_checkpoint
from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train
from memtool.errors import UserError
from memtool.models.base import replica_output, replica_state, stack_replicas
from memtool.models.memn2n import MemN2N
from memtool.models.ntm import NTM
from memtool.optim import clip_gradients
from memtool.train_state import SilentObserver
from tests.helpers import one_line_error, tiny_config

# a start phase, per-matrix clipping, random noise (drawn per replica) and LR decay: all per restart
TRAIN = {
    "restarts": 3,
    "epochs": 2,
    "clip_norm": 1.0,
    "start_phase": {"mode": "linear_start", "epochs": 1},
    "lr_decay": {"every_epochs": 1},
}


def _records(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    untimed = [{k: v for k, v in r.items() if k not in ("elapsed", "examples_per_second")} for r in rows]
    return sorted(untimed, key=lambda r: (r["restart"], r["step"]))


def _assert_close_states(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)


def _assert_close_records(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for mine, theirs in zip(a, b, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if isinstance(value, float):
                assert value == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
            elif key != "valid_groups":
                assert value == theirs[key], key


@pytest.mark.parametrize(
    ("buckets", "model"),
    [(0, {}), (2, {}), (0, {"match": "cosine"})],
    ids=["shuffled", "length-buckets", "cosine"],
)
def test_restarts_stacked_end_where_restarts_in_turn_end(tmp_path: Path, buckets: int, model: dict) -> None:
    # with length buckets, the epoch's short batch comes at another step in each replica: the replicas'
    # batches then differ in size as well as in story and sentence lengths; the cosine match has a
    # scalar weight, which clipping per replica must handle
    data = {"length_buckets": buckets, "generator": {"train_stories": 60, "test_stories": 10}}
    in_turn = train(build_config(tiny_config(train=TRAIN, data=data, model=model)), tmp_path / "in_turn")
    stacked_config = tiny_config(train={**TRAIN, "stack_restarts": True}, data=data, model=model)
    stacked = train(build_config(stacked_config), tmp_path / "stacked")
    for restart in range(3):  # each restart's best, an ordinary checkpoint, within float noise
        name = f"best-restart-{restart}.pt"
        a, b = (load_checkpoint(tmp_path / run / name) for run in ("stacked", "in_turn"))
        _assert_close_states(a["model_state"], b["model_state"])
        assert a["restart"] == restart and a["epoch"] == b["epoch"]
    _assert_close_records(_records(tmp_path / "stacked"), _records(tmp_path / "in_turn"))
    assert stacked.best_restart == in_turn.best_restart
    assert stacked.test.metrics["error"] == in_turn.test.metrics["error"]
    assert stacked.restarts.keys() == in_turn.restarts.keys() == {"0", "1", "2"}
    # the kept restart is inspected and evaluated as any run's
    runner = CliRunner()
    assert runner.invoke(app, ["inspect-memory", str(tmp_path / "stacked"), "--json"]).exit_code == 0
    result = runner.invoke(app, ["eval", str(tmp_path / "stacked"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["error"] == stacked.test.metrics["error"]
    # last.pt holds the replicas stacked for training: it says so rather than loading as one model
    last = load_checkpoint(tmp_path / "stacked" / "last.pt")
    with pytest.raises(UserError, match="3 restarts stacked"):
        model_from_checkpoint(last, torch.device("cpu"))


class CrashAt(SilentObserver):
    """Dies like a SIGKILL would: abruptly, without the engine saving anything."""

    def __init__(self, step: int) -> None:
        self.step = step

    def stepped(self, progress, loss) -> None:
        if progress.step == self.step:
            raise SystemExit("killed")


def test_a_stacked_run_killed_mid_epoch_resumes_exactly(tmp_path: Path) -> None:
    config = build_config(tiny_config(train={**TRAIN, "stack_restarts": True, "checkpoint_every_steps": 2}))
    whole = train(config, tmp_path / "whole")
    with pytest.raises(SystemExit):
        train(config, tmp_path / "killed", observer=CrashAt(step=9))  # mid-epoch 2
    training = load_checkpoint(tmp_path / "killed" / "last.pt")["training"]
    assert training["progress"]["step"] == 8 and training["progress"]["batches_done"] == 2
    # each restart's best lives in last.pt until the run ends; a SIGKILL leaves no best-restart file
    assert sorted(training["bests"]) == ["0", "1", "2"]
    for path in (tmp_path / "killed").glob("best-restart-*.pt"):
        path.unlink()
    # asked for one now, memtool says how to get it
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "killed" / "best-restart-1.pt")])
    one_line_error(result, "best-restart-1.pt: checkpoint not found", "--resume")
    # resumed to where it stopped, it trains nothing and writes those bests out
    stopped = build_config(tiny_config(train={**TRAIN, "stack_restarts": True, "max_steps": 8}))
    train(stopped, tmp_path / "killed", resume=True)
    for restart, best in training["bests"].items():
        written = load_checkpoint(tmp_path / "killed" / f"best-restart-{restart}.pt")
        assert written["epoch"] == best["epoch"] and written["valid"] == best["valid"]
        assert all(torch.equal(written["model_state"][k], v) for k, v in best["model_state"].items())
    resumed = train(config, tmp_path / "killed", resume=True)
    for name in ("last.pt", "best.pt", "best-restart-0.pt", "best-restart-1.pt", "best-restart-2.pt"):
        a, b = (load_checkpoint(tmp_path / run / name)["model_state"] for run in ("whole", "killed"))
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert _records(tmp_path / "whole") == _records(tmp_path / "killed")
    assert resumed.test.metrics == whole.test.metrics


def _replica_gradients(mode: str) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Random gradients of two weights for 3 replicas, clipped stacked and clipped one model at a time."""
    torch.manual_seed(0)
    shapes = [(4, 3), (5,), ()]  # () : a scalar weight (MemN2N's cosine scale), one number per replica
    grads = [
        torch.randn(3, *shape) * torch.tensor([0.1, 5.0, 50.0]).view(3, *[1] * len(shape)) for shape in shapes
    ]
    stacked = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for parameter, grad in zip(stacked, grads, strict=True):
        parameter.grad = grad.clone()
    clip_gradients(stacked, 2.0, mode, max_value=20.0, replicas=True)
    alone = []
    for replica in range(3):
        own = [torch.nn.Parameter(torch.zeros_like(g[replica])) for g in grads]
        for parameter, grad in zip(own, grads, strict=True):
            parameter.grad = grad[replica].clone()
        clip_gradients(own, 2.0, mode, max_value=20.0)
        alone.append([p.grad for p in own])
    return [p.grad for p in stacked], alone


@pytest.mark.parametrize("mode", ["per_matrix", "per_matrix_spectral", "global"])
def test_each_replica_is_clipped_as_its_own_model(mode: str) -> None:
    stacked, alone = _replica_gradients(mode)
    for replica in range(3):
        for grad, own in zip(stacked, alone[replica], strict=True):
            torch.testing.assert_close(grad[replica], own)
    assert stacked[0][0].abs().max() < 1  # the small replica untouched, the large ones clipped
    assert stacked[0][2].abs().max() <= 2.0 + 1e-4  # any of the norms at 2 bounds every element


VARIANTS = [
    {},
    {"sentence_encoding": "position_centered", "empty_slots_in_softmax": True},
    {"sentence_encoding": "bow", "temporal_encoding": False},
    {"weight_tying": "layerwise"},
    {"match": "cosine"},
    {"match": "mlp", "answer": "mlp"},
]


@pytest.mark.parametrize(
    "options", VARIANTS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "paper"
)
def test_replicas_in_one_pass_compute_what_each_model_computes(options: dict) -> None:
    """Three replicas of different sizes of batch, story and sentence, in training mode with random noise:
    each replica's logits and gradients are its own model's, and its noise is drawn as its own run's."""
    models, generators, batches = [], [], []
    for replica, (size, slots, words) in enumerate([(3, 5, 4), (2, 3, 6), (4, 6, 2)]):
        torch.manual_seed(replica)
        models.append(
            MemN2N(
                vocab_size=12, memory_size=8, sentence_size=6, embedding_dim=8, random_noise=0.2, **options
            )
        )
        generators.append(torch.Generator().manual_seed(100 + replica))
        story = torch.randint(0, 12, (size, slots, words))
        count = torch.randint(1, slots + 1, (size,))
        story[torch.arange(slots).view(1, -1) >= count.view(-1, 1)] = 0
        batches.append({"story": story, "memory_count": count, "question": torch.randint(1, 12, (size, 3))})
    stacked = stack_replicas(models)
    together = stacked.forward_replicas(batches, generators)
    outputs = [replica_output(together, r, len(batch["question"])) for r, batch in enumerate(batches)]
    sum(output.prediction.logsumexp(-1).sum() for output in outputs).backward()
    for replica, (model, batch, output) in enumerate(zip(models, batches, outputs, strict=True)):
        torch.manual_seed(100 + replica)  # the model alone draws from torch's generator
        alone = model(**batch)
        torch.testing.assert_close(output.prediction, alone.prediction)
        slots = batch["story"].shape[1]  # the stories were padded to the longest replica's
        torch.testing.assert_close(output.trace["attention"][..., :slots], alone.trace["attention"])
        assert not output.trace["attention"][..., slots:].any()
        alone.prediction.logsumexp(-1).sum().backward()
        for name, parameter in model.named_parameters():
            grad = stacked.get_parameter(name).grad
            if parameter.grad is None:  # unused (temporal tables without temporal encoding)
                assert grad is None, name
                continue
            torch.testing.assert_close(grad[replica], parameter.grad, msg=name)
        state = replica_state(stacked, replica)
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_refusals_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(tiny_config(train={**TRAIN, "stack_restarts": True})))
    cases = [
        (["--parallel-restarts", "2"], "drop --parallel-restarts"),
        (["--set", "train.stop_at_target=true"], "train.stop_at_target"),
        (["--set", "train.start_phase.until_plateau=true"], "until_plateau"),
        (["--set", "train.compile=true"], "forward_replicas) is not compiled"),
    ]
    for arguments, fragment in cases:
        result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run"), *arguments])
        one_line_error(result, fragment)
    lstm = ["configs/lstm_copy.yaml", "--set", "train.restarts=2", "--set", "train.stack_restarts=true"]
    result = runner.invoke(app, ["train", *lstm, "--out", str(tmp_path / "run")])
    one_line_error(result, "model 'lstm' cannot stack its restarts")
    assert not (tmp_path / "run").exists()
    # one restart stacks nothing: the option is no reason to refuse a config
    assert build_config(tiny_config(train={"stack_restarts": True, "compile": True})).train.compile


def test_replicas_validated_in_one_pass_score_as_each_model_alone() -> None:
    """bAbI's evaluate_replicas (one forward_replicas per batch) gives each replica what evaluate gives
    its own model: loss, error and every task's group, on a batch size that leaves a short last batch."""
    config = build_config(tiny_config(task={"tasks": [1, 2]}))
    task = build_task(config)
    arguments = model_arguments(config, task)
    models = []
    for replica in range(3):
        torch.manual_seed(replica)
        models.append(create_model("memn2n", arguments))
    stacked = stack_replicas(models)
    together = task.evaluate_replicas(stacked, models.__getitem__, 3, "test", batch_size=7)
    assert stacked.training  # the mode it was given back in
    for model, result in zip(models, together, strict=True):
        alone = task.evaluate(model, "test", batch_size=7)
        assert result.metrics.keys() == alone.metrics.keys() and result.groups.keys() == alone.groups.keys()
        assert result.metrics["error"] == alone.metrics["error"]
        assert result.metrics["loss"] == pytest.approx(alone.metrics["loss"], rel=1e-6)
        for name, group in alone.groups.items():
            assert result.groups[name]["error"] == group["error"]
            assert result.groups[name]["loss"] == pytest.approx(group["loss"], rel=1e-6)
    assert len({result.metrics["loss"] for result in together}) == 3  # three models, three scores


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_ntm_replicas_in_one_pass_compute_what_each_ntm_computes(controller: str) -> None:
    """Three NTM replicas with batches of different sizes and lengths: padded at the start of time, each
    replica's logits, trace and gradients are its own model's (the answers are the last steps)."""
    models, batches = [], []
    for replica, (size, steps) in enumerate([(3, 5), (2, 8), (4, 6)]):
        torch.manual_seed(replica)
        models.append(
            NTM(
                input_size=4,
                output_size=3,
                controller=controller,
                controller_size=8,
                memory_rows=6,
                memory_width=5,
                read_heads=2,
                write_heads=2,
                memory_init="learned" if controller == "feedforward" else "random",
            ).double()  # float64: the learned memory's gradient sums many steps, in another order when held
        )
        batches.append({"inputs": torch.randn(size, steps, 4, dtype=torch.float64)})
    stacked = stack_replicas(models)
    together = stacked.forward_replicas(batches, None)
    answers = 4  # each replica's last steps
    loss = sum(
        together.prediction[r, : len(b["inputs"]), -answers:].logsumexp(-1).sum()
        for r, b in enumerate(batches)
    )
    loss.backward()
    steps = together.prediction.shape[2]
    for replica, (model, batch) in enumerate(zip(models, batches, strict=True)):
        alone = model(**batch)
        size, own = batch["inputs"].shape[:2]
        mine = replica_output(together, replica, size)
        torch.testing.assert_close(mine.prediction[:, steps - own :], alone.prediction)
        for name, value in alone.trace.items():
            torch.testing.assert_close(mine.trace[name][:, steps - own :], value, msg=name)
        alone.prediction[:, -answers:].logsumexp(-1).sum().backward()
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(stacked.get_parameter(name).grad[replica], parameter.grad, msg=name)


NTM_COPY = {
    "seed": 0,
    "device": "cpu",
    "model": {"name": "ntm", "controller_size": 16, "memory_rows": 8, "memory_width": 6},
    "task": {"name": "copy", "bits": 4, "min_length": 1, "max_length": 5},
    "data": {"sequences_per_epoch": 64, "valid_sequences": 16, "test_sequences": 16},
    "eval": {"lengths": [5]},
    "train": {"batch_size": 8, "epochs": 2, "lr": 0.003, "optimizer": "adam", "clip_norm": 5.0,
              "clip_value": None, "threads": 1},
}  # fmt: skip


def test_ntm_restarts_stacked_end_where_ntm_restarts_in_turn_end(tmp_path: Path) -> None:
    """The NTM on copy, three restarts: each replica's batches have their own lengths at every step."""
    config = copy.deepcopy(NTM_COPY)
    config["data"]["sequences_per_epoch"] = 96
    config["eval"]["lengths"] = [5, 8]
    config["train"]["restarts"] = 3
    in_turn = train(build_config(config), tmp_path / "in_turn")
    stacked_config = {**config, "train": {**config["train"], "stack_restarts": True}}
    stacked = train(build_config(stacked_config), tmp_path / "stacked")
    for restart in range(3):
        name = f"best-restart-{restart}.pt"
        a, b = (load_checkpoint(tmp_path / run / name) for run in ("stacked", "in_turn"))
        _assert_close_states(a["model_state"], b["model_state"])
        assert a["epoch"] == b["epoch"]
    _assert_close_records(_records(tmp_path / "stacked"), _records(tmp_path / "in_turn"))
    assert stacked.best_restart == in_turn.best_restart
    assert stacked.test.metrics["cost_bits"] == pytest.approx(in_turn.test.metrics["cost_bits"], rel=1e-4)


BABI = tiny_config(train=TRAIN, data={"generator": {"train_stories": 60, "test_stories": 10}})


@pytest.mark.parametrize("family", ["memn2n", "ntm"])
@pytest.mark.parametrize("stacked", [False, True], ids=["in-turn", "stacked"])
def test_restart_r_is_the_run_with_seed_plus_r(tmp_path: Path, family: str, stacked: bool) -> None:
    """Restart 2 of a seed-5 run ends where a run with seed 7 ends, its data seeded as the seed-5 run's
    (``data.seed``: the same validation split to choose on): initialisation, batch order and noise."""
    base = copy.deepcopy(BABI if family == "memn2n" else NTM_COPY)
    base["train"] = {**base["train"], "restarts": 1}
    restarts = copy.deepcopy(base)
    restarts["seed"] = 5
    restarts["train"] |= {"restarts": 3, "stack_restarts": stacked}
    single = copy.deepcopy(base)
    single["seed"] = 7
    single["data"] = {**single["data"], "seed": 5}
    train(build_config(restarts), tmp_path / "restarts")
    train(build_config(single), tmp_path / "single")
    kept = load_checkpoint(tmp_path / "restarts" / "best-restart-2.pt")
    alone = load_checkpoint(tmp_path / "single" / "best.pt")
    _assert_close_states(kept["model_state"], alone["model_state"])
    assert kept["epoch"] == alone["epoch"]
    of_restart_2 = [{**r, "restart": 0} for r in _records(tmp_path / "restarts") if r["restart"] == 2]
    _assert_close_records(of_restart_2, _records(tmp_path / "single"))
