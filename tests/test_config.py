from pathlib import Path

import pytest
import torch
import yaml

from memtool.config import build_config, load_config
from memtool.errors import UserError
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_and_names_its_command(path: Path) -> None:
    load_config(path)
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith(f"# memtool train configs/{path.name}")


def test_shipped_configs_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "quickstart.yaml",
        "memn2n_babi_task1.yaml",
        "memn2n_babi_1k_joint.yaml",
        "memn2n_babi_10k_joint.yaml",
    } <= names


def test_defaults_are_filled_and_the_resolved_dict_loads_again() -> None:
    config = build_config(tiny_config())
    resolved = config.to_dict()
    assert resolved["model"]["weight_tying"] == "adjacent"
    assert resolved["train"]["clip_norm"] == 40.0
    assert build_config(resolved).to_dict() == resolved


def test_set_overrides_parse_yaml_values() -> None:
    config = build_config(
        tiny_config(), ["train.lr=0.5", "model.hops=1", "task.tasks=[1, 2]", "data.source=files"]
    )
    assert config.train.lr == 0.5
    assert config.model.params.hops == 1
    assert config.task.params.tasks == [1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"lr": "fast"}}, r"train\.lr: .*got 'fast'"),
        ({"train": {"learning_rate": 0.1}}, r"train\.learning_rate: Extra inputs are not permitted"),
        (
            {"model": {"name": "memn3n"}},
            r"model\.name: unknown model 'memn3n'; known: captioner, lstm, memn2n, ntm",
        ),
        ({"task": {"name": "babi", "tasks": [0]}}, r"task\.tasks"),
        ({"model": {"name": "memn2n", "hops": 0}}, r"model\.hops: .*greater than or equal to 1"),
        ({"model": {"name": "memn2n", "match": "euclid"}}, r"model\.match: .*'dot', 'cosine' or 'mlp'"),
        ({"model": {"name": "memn2n", "vocab_size": 3}}, r"model\.vocab_size: Extra inputs"),
        (  # a typo of one of the section's own keys gets its likely name
            {"model": {"name": "memn2n", "embeding_dim": 3}},
            r"model\.embeding_dim: Extra inputs.*; did you mean model\.embedding_dim\?",
        ),
        ({"data": {"source": "files", "path": None}}, r"data.path is required"),
        ({"seed": "x"}, r"seed: .*got 'x'"),
    ],
)
def test_bad_values_are_named_in_one_line(change: dict, message: str) -> None:
    raw = tiny_config()
    for key, value in change.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) and key in ("train", "data") else value
    with pytest.raises(UserError, match=message) as caught:
        build_config(raw, source="x.yaml")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("x.yaml: ")


@pytest.mark.parametrize(
    ("assignment", "message"),
    [  # pydantic's lax mode would train on each of these: hops 1, lr 1.0, epochs 1, dimension 20
        ("model.hops=true", r"model\.hops: should be a whole number, not true/false \(got True\)"),
        ("train.lr=true", r"train\.lr: should be a number, not true/false"),
        ("train.epochs=yes", r"train\.epochs: should be a whole number, not true/false"),
        ("train.max_steps=no", r"train\.max_steps: should be a whole number, not true/false"),
        ("model.embedding_dim=20.0", r"model\.embedding_dim: should be a whole number \(got 20\.0\)"),
        ("model.temporal_encoding=1", r"model\.temporal_encoding: should be true or false \(got 1\)"),
        ("train.stack_restarts=0", r"train\.stack_restarts: should be true or false"),
        ("seed=false", r"seed: should be a whole number, not true/false"),
        ("train.optimizer={name: sgd, momentum: true}", r"train\.optimizer: momentum should be a number"),
        ("train.optimizer={name: sgd, nesterov: 1}", r"train\.optimizer: nesterov should be true or false"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_not_converted(assignment: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        build_config(tiny_config(), [assignment], source="x.yaml")
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"x.yaml with --set {assignment}: ")  # the file is not at fault


def test_a_check_of_several_keys_names_the_override_that_broke_it() -> None:
    """A section's own check of keys together ("min_length above max_length") is the override's fault
    when the override set one of the keys it names; one that names none of them leaves the file at fault."""
    copy_task = {"name": "copy", "bits": 4, "min_length": 1, "max_length": 5}
    config = {"model": {"name": "ntm"}, "task": copy_task, "train": {"epochs": 1}}
    with pytest.raises(UserError) as caught:
        build_config(config, ["task.min_length=9", "task.bits=3"], source="x.yaml")
    assert str(caught.value).startswith("x.yaml with --set task.min_length=9: task: min_length 9 is above")
    with pytest.raises(UserError) as caught:
        build_config({**config, "task": {**copy_task, "min_length": 9}}, ["task.bits=3"], source="x.yaml")
    assert str(caught.value).startswith("x.yaml: task: min_length 9 is above")
    # a list of what a section accepts names the key but not its value: the file's unknown key is at fault
    odd_optimizer = {**config, "train": {"epochs": 1, "optimizer": {"name": "rmsprop", "foo": 1}}}
    with pytest.raises(UserError) as caught:
        build_config(odd_optimizer, ["train.optimizer.momentum=0.9"], source="x.yaml")
    assert str(caught.value).startswith("x.yaml: train.optimizer: rmsprop takes no argument 'foo'")
    # a problem that names the whole dotted key an override set is about it, wherever it is reported
    stacked = {**config, "train": {"epochs": 1, "restarts": 2, "stack_restarts": True}}
    with pytest.raises(UserError) as caught:
        build_config(stacked, ["train.compile=true"], source="x.yaml")
    assert str(caught.value).startswith("x.yaml with --set train.compile=true: train.stack_restarts: ")


def test_a_problem_found_after_loading_names_the_override_however_its_number_is_written() -> None:
    """A model's own check runs when the model is built; its message prints the value as Python does."""
    config = build_config(tiny_config(), ["model.hops=+3", "train.lr=1e-3"], source="x.yaml")
    assert (
        config.located("model: hops 3 is too many")
        == "x.yaml with --set model.hops=+3: model: hops 3 is too many"
    )
    # a train-section check names hops but is not in model's section, nor names model.hops in full
    assert (
        config.located("train: lr 0.001 with hops 3")
        == "x.yaml with --set train.lr=1e-3: train: lr 0.001 with hops 3"
    )
    assert config.located("model: match 'mlp' needs more") == "x.yaml: model: match 'mlp' needs more"


def test_what_the_kind_check_still_accepts() -> None:
    """An int where a float goes, numbers as text (YAML reads 1e-3 so; the CLI's task options arrive so),
    null for an optional, a checkpoint's JSON."""
    config = build_config(
        tiny_config(), ["train.lr=1", "train.clip_norm=1e-3", "train.max_steps=null", "model.hops='2'"]
    )
    assert (config.train.lr, config.train.clip_norm, config.train.max_steps) == (1.0, 0.001, None)
    assert config.model.params.hops == 2
    resolved = config.to_dict()  # what a checkpoint stores: lists for tuples, text for paths
    assert build_config(resolved).to_dict() == resolved


def test_all_problems_are_reported_at_once() -> None:
    raw = tiny_config(train={"lr": -1, "batch_size": 0})
    with pytest.raises(UserError) as caught:
        build_config(raw)
    assert "train.lr" in str(caught.value) and "train.batch_size" in str(caught.value)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: memn2n\n  hops: [1, 2\ntask: {}\n")
    with pytest.raises(UserError, match=r"bad\.yaml: malformed YAML at line \d+, column \d+") as caught:
        load_config(path)
    assert "flow sequence that starts at line 3, column 9" in str(caught.value)  # the unclosed [, not line 4
    path.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match=r"bad\.yaml: expected a mapping"):
        load_config(path)
    with pytest.raises(UserError, match=r"missing\.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_set_reads_exponent_numbers_and_rejects_empty_keys() -> None:
    assert build_config(tiny_config(), ["train.lr=1e-3"]).train.lr == 0.001
    with pytest.raises(UserError, match=r"empty name in the key path 'train\.\.lr'"):
        build_config(tiny_config(), ["train..lr=1"])
    assert build_config(tiny_config(), ["task.tasks=1"]).task.params.tasks == [1]


def test_bad_set_syntax() -> None:
    with pytest.raises(UserError, match=r"expected KEY\.PATH=VALUE"):
        build_config(tiny_config(), ["train.lr"])
    with pytest.raises(UserError, match=r"train\.lr is not a section"):
        build_config(tiny_config(), ["train.lr.x=1"])


def test_optimizer_is_a_torch_name_with_keyword_arguments_checked_against_its_constructor() -> None:
    config = build_config(
        tiny_config(train={"optimizer": {"name": "rmsprop", "momentum": 0.9, "alpha": 0.95}})
    )
    assert config.train.optimizer.name == "rmsprop"
    assert config.train.optimizer.arguments == {"momentum": 0.9, "alpha": 0.95}
    assert build_config(tiny_config(train={"optimizer": "adadelta"})).train.optimizer.name == "adadelta"
    resolved = config.to_dict()
    assert build_config(resolved).to_dict() == resolved
    with pytest.raises(UserError, match=r"train\.optimizer: .*rmsprop takes no argument 'betas'"):
        build_config(tiny_config(train={"optimizer": {"name": "rmsprop", "betas": [0.9, 0.99]}}))
    with pytest.raises(UserError, match=r"train\.optimizer: .*Invalid momentum value: -1"):
        build_config(tiny_config(train={"optimizer": {"name": "sgd", "momentum": -1}}))
    with pytest.raises(UserError, match=r"train\.optimizer\.name"):
        build_config(tiny_config(train={"optimizer": "lbfgs2"}))


def test_start_phase_mode_must_be_one_the_model_declares() -> None:
    phase = {"mode": "curriculum", "epochs": 2}
    with pytest.raises(UserError, match=r"train\.start_phase\.mode: model 'memn2n' has no mode 'curriculum'"):
        build_config(tiny_config(train={"start_phase": phase}))


def test_eval_section_is_validated_by_the_tasks_schema() -> None:
    with pytest.raises(UserError, match=r"eval\.lengths: Extra inputs are not permitted"):
        build_config({**tiny_config(), "eval": {"lengths": [30, 50]}})


@pytest.fixture
def forget_test_models():
    from memtool.registry import MODELS

    yield
    MODELS._entries.pop("memn2n_copy_for_test", None)  # other tests check every registered model


def test_imports_load_a_users_module_relative_to_the_config(tmp_path: Path, forget_test_models) -> None:
    (tmp_path / "mine.py").write_text(
        "from memtool.registry import register_model\n"
        "from memtool.models.memn2n import MemN2N\n"
        "@register_model('memn2n_copy_for_test')\n"
        "class Copy(MemN2N):\n    'A copy.'\n"
    )
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({**tiny_config(model={"name": "memn2n_copy_for_test"}), "imports": ["mine.py"]})
    )
    config = load_config(path)
    assert config.model.name == "memn2n_copy_for_test"
    assert config.imports == (str((tmp_path / "mine.py").resolve()),)
    assert load_config(path).imports == config.imports  # loaded once, not registered twice
    path.write_text(yaml.safe_dump({**tiny_config(), "imports": ["missing.py"]}))
    with pytest.raises(UserError, match=r"imports: 'missing\.py': no such file"):
        load_config(path)
    path.write_text(yaml.safe_dump({**tiny_config(), "imports": ["no_such_module_xyz"]}))
    with pytest.raises(UserError, match=r"imports: module 'no_such_module_xyz' cannot be imported"):
        load_config(path)


@pytest.mark.parametrize("key", ["seed", "data.seed"])
@pytest.mark.parametrize("value", ["-1", "4294967296"])
def test_a_seed_outside_what_generators_take_is_one_line(key: str, value: str) -> None:
    with pytest.raises(UserError, match=rf"{key}: Input should be"):
        load_config(ROOT / "configs" / "ntm_copy.yaml", overrides=[f"{key}={value}"])


def test_derived_seeds_of_any_size_seed_a_generator_and_small_ones_stay_as_they_were() -> None:
    from memtool.tasks.base import seeded_generator

    largest = (
        (2**32 - 1 + 10) * 1_000_003 * 100_003 * 1_000_003
    )  # the largest seed, restarts, epochs, batches
    assert torch.randint(9, (3,), generator=seeded_generator(largest)).shape == (3,)
    small = torch.Generator().manual_seed(12345)
    torch.testing.assert_close(
        torch.rand(4, generator=seeded_generator(12345)), torch.rand(4, generator=small)
    )
