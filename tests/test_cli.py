import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from memtool.cli import app
from tests.helpers import one_line_error as _one_line_error
from tests.helpers import tiny_config

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run on generated files, shared by the eval and inspect tests."""
    root = tmp_path_factory.mktemp("cli")
    from memtool.tasks.babi.generator import write_generated

    write_generated(root / "babi", (1, 6), train_stories=30, test_stories=6, seed=0)
    config = root / "tiny.yaml"
    raw = tiny_config(data={"source": "files", "path": str(root / "babi")}, task={"tasks": "all"})
    config.write_text(yaml.safe_dump(raw))
    result = invoke("train", config, "--out", root / "run", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "test error (%)" in result.output and "results in" in result.output
    return root / "run"


def test_train_writes_a_complete_run_directory(trained_run: Path) -> None:
    assert {"config.yaml", "metrics.jsonl", "best.pt", "last.pt", "summary.json", "versions.json"} <= {
        p.name for p in trained_run.iterdir()
    }
    assert yaml.safe_load((trained_run / "config.yaml").read_text())["seed"] == 1  # --seed recorded


def test_eval_json_has_metrics_and_per_task(trained_run: Path) -> None:
    result = invoke("eval", trained_run, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload["per_task"]) == {"1", "6"}
    assert 0 <= payload["metrics"]["error"] <= 100
    task_errors = [payload["per_task"][t]["error"] for t in ("1", "6")]
    assert payload["metrics"]["mean_task_error"] == pytest.approx(sum(task_errors) / 2)


def test_eval_table_and_other_data(trained_run: Path, tmp_path: Path) -> None:
    result = invoke("eval", trained_run)
    assert result.exit_code == 0 and "per task" in result.output
    from memtool.tasks.babi.generator import write_generated

    write_generated(tmp_path / "other", (1,), train_stories=5, test_stories=3, seed=9)
    result = invoke("eval", trained_run, "--data", tmp_path / "other", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["per_task"]) == ["1"]


def test_inspect_memory_shows_attention_per_hop(trained_run: Path) -> None:
    result = invoke("inspect-memory", trained_run, "--example", "2", "--task", "6")
    assert result.exit_code == 0, result.output
    for text in ("bAbI task 6", "hop 1", "hop 2", "question", "predicted", "top 3", "★"):
        assert text in result.output
    view = json.loads(invoke("inspect-memory", trained_run, "--example", "2", "--task", "6", "--json").stdout)
    assert view["title"].startswith("bAbI task 6")
    hops = torch.tensor(view["attention"]).T
    torch.testing.assert_close(hops.sum(-1), torch.ones(len(hops)))
    assert len(view["memories"]) == len(view["memory_labels"]) == len(view["attention"])
    assert len(view["top_answers"]) == 3 and view["answer"] in ("yes", "no")
    assert view["strips"] == [] and view["facts"] == {}  # every family's view has both (README)


def test_inspect_memory_on_a_users_story_reports_unknown_words(trained_run: Path, tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_text(
        "Mary went to the kitchen.\nThe zebra danced in the garden.\nJohn moved to the office.\n"
    )
    result = invoke("inspect-memory", trained_run, "--story", story, "--question", "Where is Mary?", "--json")
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["memories"][1] == "the [zebra] [danced] in the garden"
    assert view["answer"] is None
    assert "zebra" in view["notes"][0] and "danced" in view["notes"][0]
    table = invoke("inspect-memory", trained_run, "--story", story, "--question", "Where is Mary?")
    assert "[zebra]" in table.output  # shown as written, not eaten as rich markup
    _one_line_error(invoke("inspect-memory", trained_run, "--story", story, "--question", "???"), "no words")


def test_list_shows_models_tasks_and_configs() -> None:
    result = invoke("list")
    assert result.exit_code == 0
    for text in ("memn2n", "babi", "quickstart.yaml", "memn2n_babi_1k_joint.yaml"):
        assert text in result.output


def test_list_tells_configs_of_one_model_and_task_apart(tmp_path: Path) -> None:
    from memtool.listing import config_summary, settings_apart

    model = {"name": "captioner", "attention": "soft", "reg_lambda": 1.0}
    files = {
        "reg.yaml": {"model": model, "task": {"name": "shapes_captions"}},
        "noreg.yaml": {"model": {**model, "reg_lambda": 0.0}, "task": {"name": "shapes_captions"}},
        "copy.yaml": {"model": {"name": "ntm"}, "task": {"name": "copy"}},
    }
    paths = []
    for name, raw in files.items():
        (tmp_path / name).write_text(yaml.safe_dump(raw))
        paths.append(tmp_path / name)
    apart = settings_apart(paths, {path: config_summary(path) for path in paths})
    assert apart == {paths[0]: "model.reg_lambda=1.0", paths[1]: "model.reg_lambda=0.0", paths[2]: ""}


def test_list_and_data_load_a_plugin_named_with_import() -> None:
    from tests.helpers import memtool_process

    plugin = Path(__file__).resolve().parent.parent / "examples" / "parity" / "parity.py"
    outputs = []
    for extra in ([], ["--import", str(plugin)]):
        process = memtool_process("list", *extra)
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        outputs.append(stdout)
    assert "parity_attention" not in outputs[0] and "parity_attention" in outputs[1]
    process = memtool_process("data", "download", "parity", "--import", str(plugin))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2 and "task 'parity' has no such data command" in stderr, stderr


def test_bad_inputs_exit_2_with_one_clear_line(tmp_path: Path, trained_run: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: memn2n\n")
    _one_line_error(invoke("train", bad), "bad.yaml", "malformed YAML")
    bad.write_text(yaml.safe_dump(tiny_config(model={"name": "ntm2"})))
    _one_line_error(invoke("train", bad), "model.name", "'ntm2'", "memn2n")
    bad.write_text(yaml.safe_dump(tiny_config(train={"epochs": "many"})))
    _one_line_error(invoke("train", bad), "train.epochs", "'many'")
    bad.write_text(yaml.safe_dump(tiny_config(data={"source": "files", "path": str(tmp_path / "nowhere")})))
    _one_line_error(invoke("train", bad), "data.path", "nowhere", "memtool data download babi")
    (tmp_path / "qa1_train.txt").write_text("1 Mary went to the hall.\n")  # a task file, not its folder
    bad.write_text(
        yaml.safe_dump(tiny_config(data={"source": "files", "path": str(tmp_path / "qa1_train.txt")}))
    )
    _one_line_error(invoke("train", bad), "data.path", "qa1_train.txt' is a file", "the bAbI directory")
    _one_line_error(invoke("train", tmp_path / "missing.yaml"), "missing.yaml", "not found")
    _one_line_error(invoke("train", bad, "--set", "train.lr"), "KEY.PATH=VALUE")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((trained_run / "best.pt").read_bytes()[:500])
    _one_line_error(invoke("eval", corrupt), "corrupt.pt", "corrupt or not a memtool checkpoint")
    flipped = tmp_path / "flipped.pt"  # loads, but a weight's bytes changed on disk: torch does not notice
    data = bytearray((trained_run / "best.pt").read_bytes())
    with zipfile.ZipFile(trained_run / "best.pt") as archive:
        storages = [entry for entry in archive.infolist() if "/data/" in entry.filename]
        weights = max(storages, key=lambda entry: entry.file_size)  # the largest tensor
    header = weights.header_offset  # a zip's local header: 30 bytes, then the name and the extra field
    name, extra = (int.from_bytes(data[header + at : header + at + 2], "little") for at in (26, 28))
    start = header + 30 + name + extra
    data[start + 8 : start + 208] = b"\x7f" * 200
    flipped.write_bytes(bytes(data))
    _one_line_error(invoke("eval", flipped), "flipped.pt", "corrupt", "fails its checksum")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    _one_line_error(invoke("eval", foreign), "foreign.pt", "not a memtool checkpoint")
    _one_line_error(invoke("eval", tmp_path), "no best.pt or last.pt")
    _one_line_error(invoke("inspect-memory", trained_run, "--example", "99999"), "--example", "out of range")
    _one_line_error(invoke("inspect-memory", trained_run, "--task", "3"), "--task", "no bAbI task 3")
    _one_line_error(
        invoke("inspect-memory", trained_run, "--story", tmp_path / "none.txt", "--question", "x"), "none.txt"
    )
    _one_line_error(invoke("eval", trained_run, "--set", "model.hops=zero"), "model.hops")
    ntm = Path(__file__).parent / "smoke" / "ntm-copy.yaml"  # the model's own check of keys together
    _one_line_error(
        invoke("train", ntm, "--set", "model.shift_range=9", "--out", tmp_path / "wide"),
        "ntm-copy.yaml with --set model.shift_range=9: model: shift_range 9 shifts by up to 19 rows",
    )
    assert not (tmp_path / "wide").exists()


def test_checkpoints_never_unpickle_code(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "memtool-checkpoint", "payload": Evil()}, path)
    _one_line_error(invoke("eval", path), "evil.pt", "corrupt or not a memtool checkpoint")


def test_resume_of_another_models_checkpoint_is_refused(trained_run: Path, tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    raw = yaml.safe_load((trained_run / "config.yaml").read_text())
    raw["model"]["match"] = "mlp"
    config.write_text(yaml.safe_dump(raw))
    _one_line_error(invoke("train", config, "--out", trained_run, "--resume"), "cannot resume", "model.match")
    another = tmp_path / "ntm.yaml"  # another family altogether: said plainly, not as 50 changed keys
    another.write_text((Path(__file__).parent / "smoke" / "ntm-copy.yaml").read_text())
    _one_line_error(
        invoke("train", another, "--out", trained_run, "--resume"),
        "this run trained memn2n on babi, the config is ntm on copy",
    )


def test_eval_names_the_override_that_cannot_apply(trained_run: Path) -> None:
    assert (
        invoke("eval", trained_run, "--set", "train.threads=1").exit_code == 0
    )  # the machine's, not the model's
    for key in ("model.name=ntm", "task.name=copy", "model.hops=5"):
        _one_line_error(
            invoke("eval", trained_run, "--set", key), f"--set {key.split('=')[0]}: fixed by the trained"
        )
    _one_line_error(  # allowed to change, but not to this: the override is named, not only the file
        invoke("eval", trained_run, "--set", "data.source=nowhere"), "best.pt with --set data.source=nowhere"
    )


def _archive(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in {
            "tasks_1-20_v1-2/en/qa1_single_train.txt": "1 Mary went to the hall.\n2 Where is Mary?\thall\t1",
            "tasks_1-20_v1-2/en/qa1_single_test.txt": "1 John went to the hall.\n2 Where is John?\thall\t1",
            "tasks_1-20_v1-2/hn/qa1_single-supporting-fact_train.txt": "1 x\n",
            "tasks_1-20_v1-2/../escape.txt": "nope",
        }.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_data_download_unpacks_a_local_archive(tmp_path: Path) -> None:
    archive = _archive(tmp_path / "babi.tar.gz")
    result = invoke("data", "download", "babi", "--to", tmp_path / "data", "--url", archive.as_uri())
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "en" / "qa1_single_train.txt").read_text().startswith("1 Mary")
    assert (tmp_path / "data" / "hn").is_dir()
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "escape.txt").exists()
    _one_line_error(
        invoke("data", "download", "babi", "--to", tmp_path / "d2", "--url", (tmp_path / "no.tgz").as_uri()),
        "download failed",
    )
    (tmp_path / "junk.tgz").write_bytes(b"not a tar")
    _one_line_error(
        invoke(
            "data", "download", "babi", "--to", tmp_path / "d3", "--url", (tmp_path / "junk.tgz").as_uri()
        ),
        "not a readable tar archive",
    )
    # a second download into the folder memtool unpacked into replaces its files
    again = invoke("data", "download", "babi", "--to", tmp_path / "data", "--url", archive.as_uri())
    assert again.exit_code == 0, again.output
    assert "--set data.path=" in again.output and str(tmp_path / "data" / "en") in again.output


def test_data_download_never_writes_over_the_users_files_or_from_a_bad_archive(tmp_path: Path) -> None:
    good = _archive(tmp_path / "babi.tar.gz").read_bytes()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "qa1_single_train.txt").write_text("my own notes")
    download = lambda to, archive: invoke("data", "download", "babi", "--to", to, "--url", archive.as_uri())  # noqa: E731
    _one_line_error(download(mine, tmp_path / "babi.tar.gz"), "--to", "files memtool did not download")
    assert [p.name for p in mine.iterdir()] == ["qa1_single_train.txt"]
    assert (mine / "qa1_single_train.txt").read_text() == "my own notes"

    cut = tmp_path / "cut.tar.gz"  # an interrupted download
    cut.write_bytes(good[: len(good) // 2])
    _one_line_error(download(tmp_path / "a", cut), "cut.tar.gz", "cut short")
    flipped = tmp_path / "flipped.tar.gz"  # a byte changed in the compressed stream
    flipped.write_bytes(good[:-12] + bytes(b ^ 0xFF for b in good[-12:-8]) + good[-8:])
    _one_line_error(download(tmp_path / "b", flipped), "flipped.tar.gz")
    flat = tmp_path / "flat.tar.gz"  # qa files with no top folder: refused, and nothing unpacked
    with tarfile.open(flat, "w:gz") as tar:
        for name in ("en/qa1_single_train.txt", "en/qa1_single_test.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"1"))
    _one_line_error(download(tmp_path / "c", flat), "flat.tar.gz", "no bAbI task files")
    for refused in ("a", "b", "c"):
        assert not (tmp_path / refused).exists(), refused


def test_data_generate_writes_babi_files(tmp_path: Path) -> None:
    result = invoke(
        "data", "generate", "babi", "--to", tmp_path / "gen", "--train-stories", "2", "--test-stories", "1"
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "gen").glob("qa*_train.txt"))) == 5


def test_usage_errors_are_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from memtool.cli import main

    for argv, fragment in (
        (["train", "x.yaml", "--seed", "abc"], "--seed"),
        (["train", "x.yaml", "--bogus"], "No such option: --bogus"),
        (["train"], "Missing argument"),
        (["inspect-memory", "r", "--example", "two"], "--example"),
        (["train", "x.yaml", "--device", "tpu"], "tpu"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2, argv
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], lines


@pytest.mark.parametrize("saved", [False, True])
def test_a_ctrl_c_the_engine_could_not_report_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], saved: bool
) -> None:
    """A Ctrl-C while the data are prepared (the engine's own handler not yet installed), or a second one
    while the first one's save runs: typer would turn the KeyboardInterrupt into a silent exit 130. The
    line says whether a saved state exists and, if so, how to continue from it."""
    import memtool.engine
    from memtool.cli import main

    run = tmp_path / "run"

    def interrupted(*args: object, **kwargs: object) -> None:
        if saved:  # the state saved before the second Ctrl-C
            run.mkdir()
            (run / "last.pt").write_bytes(b"saved")
        raise KeyboardInterrupt

    monkeypatch.setattr(memtool.engine, "train", interrupted)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    with pytest.raises(SystemExit) as stopped:
        main(["train", str(config), "--out", str(run)])
    assert stopped.value.code == 130
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    if saved:
        assert len(lines) == 1 and lines[0].startswith(
            f"interrupted: the last saved state is {run / 'last.pt'}"
        )
        assert lines[0].endswith(f"train {run / 'config.yaml'} --out {run} --resume")
    else:
        assert lines == ["interrupted before anything was saved"]


def test_eval_refuses_to_change_what_the_model_was_trained_with(trained_run: Path) -> None:
    _one_line_error(
        invoke("eval", trained_run, "--set", "model.hops=5"), "--set model.hops", "fixed by the trained"
    )
    _one_line_error(invoke("eval", trained_run, "--set", "task.memory_size=200"), "task.memory_size")
    # a key the run never had is named as unknown (with the likely one), not as a change training fixed
    _one_line_error(invoke("eval", trained_run, "--set", "foo.bar=1"), "--set foo.bar", "no key 'foo'")
    _one_line_error(
        invoke("eval", trained_run, "--set", "train.thread=1"),
        "no key 'thread' under 'train'",
        "train.threads?",
    )
    result = invoke("eval", trained_run, "--set", "train.eval_batch_size=7", "--json")
    assert result.exit_code == 0, result.output
    result = invoke("eval", trained_run, "--set", "seed=5")  # another data seed: the title says so
    assert result.exit_code == 0 and "· --set seed=5" in result.output, result.output


def test_eval_needs_only_test_files(trained_run: Path, tmp_path: Path) -> None:
    from memtool.tasks.babi.generator import write_generated

    write_generated(tmp_path / "d", (1,), train_stories=2, test_stories=3, seed=4)
    for path in (tmp_path / "d").glob("*_train.txt"):
        path.unlink()
    result = invoke("eval", trained_run, "--data", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metrics"]["examples"] == 15
    _one_line_error(invoke("eval", trained_run, "--data", tmp_path / "d", "--split", "train"), "no examples")


def test_paths_that_cannot_be_written_are_user_errors(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(invoke("train", config, "--out", blocker), "a-file")
    _one_line_error(invoke("data", "generate", "babi", "--to", blocker), "a-file")


def test_resuming_a_finished_run_changes_nothing(trained_run: Path) -> None:
    before = (trained_run / "summary.json").read_text()
    result = invoke("train", trained_run / "config.yaml", "--out", trained_run, "--resume")
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output
    result = invoke("train", trained_run / "config.yaml", "--resume")  # a run's own config finds its run
    assert result.exit_code == 0 and str(trained_run) in result.output, result.output
    assert (
        json.loads(before)["train_seconds"]
        == json.loads((trained_run / "summary.json").read_text())["train_seconds"]
    )


def test_list_reports_a_broken_config_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "broken.yaml").write_text("model: [\n")
    (tmp_path / "configs" / "odd.yaml").write_text("model: 5\ntask: {name: babi}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("memtool.cli.CONFIG_DIRS", (tmp_path / "configs",))
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert "broken.yaml" in result.output and "unreadable" in result.output
    assert "? · babi" in result.output


def test_checkpoint_with_missing_parts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": "memtool-checkpoint", "format_version": 1, "model_name": "memn2n"}, path)
    _one_line_error(invoke("eval", path), "partial.pt", "missing model_args")


def _png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert pixels.std() > 0.05, "blank figure"
    return pixels.shape[1], pixels.shape[0]


def test_inspect_memory_draws_a_png_figure(trained_run: Path, tmp_path: Path) -> None:
    figure = tmp_path / "attention.png"
    result = invoke("inspect-memory", trained_run, "--task", "6", "--example", "1", "--png", figure)
    assert result.exit_code == 0, result.output
    assert "hop 1" in result.output and str(figure) in result.output
    width, height = _png_size(figure)
    assert width > 300 and height > 200


def test_task_options_are_checked_by_the_task(trained_run: Path) -> None:
    _one_line_error(invoke("inspect-memory", trained_run, "--bogus", "1"), "--bogus", "--task, --story")
    _one_line_error(invoke("inspect-memory", trained_run, "--task", "six"), "--task", "'six'")
    _one_line_error(invoke("inspect-memory", trained_run, "--task"), "--task: needs a value")
    _one_line_error(invoke("eval", trained_run, "--data"), "--data: needs a value")
    _one_line_error(invoke("eval", trained_run, "--story", "x"), "--story", "--data")


def test_plot_draws_learning_curves_of_several_runs(trained_run: Path, tmp_path: Path) -> None:
    figure = tmp_path / "curves.png"
    result = invoke("plot", trained_run, trained_run, "--png", figure)
    assert result.exit_code == 0, result.output
    width, height = _png_size(figure)
    assert width > 300 and height > 300
    _one_line_error(
        invoke("plot", trained_run, "--png", figure, "--metric", "bleu"), "--metric bleu", "error"
    )
    _one_line_error(invoke("plot", tmp_path, "--png", figure), "no metrics.jsonl records")


def test_figures_without_matplotlib_say_which_extra_to_install(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    _one_line_error(invoke("plot", trained_run, "--png", tmp_path / "c.png"), "pip install 'memtool[plot]'")
    result = invoke("inspect-memory", trained_run, "--png", tmp_path / "a.png")
    _one_line_error(result, "pip install 'memtool[plot]'")
    assert not (tmp_path / "a.png").exists()


def test_data_commands_are_the_tasks_own(tmp_path: Path) -> None:
    _one_line_error(invoke("data", "download", "nosuch"), "unknown task 'nosuch'", "babi")
    _one_line_error(invoke("data", "shuffle", "babi"), "'shuffle'", "download, generate")
    _one_line_error(invoke("data", "generate", "babi", "--to"), "--to: needs a value")
    _one_line_error(invoke("data", "generate", "babi", "--train-stories", "0"), "--train-stories")
    result = invoke("list")
    assert "data generate babi" in result.output and "--story" in result.output


def test_tensorboard_without_the_package_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if it were not installed
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"tensorboard": True})))
    result = invoke("train", config, "--out", tmp_path / "run")
    _one_line_error(result, "pip install 'memtool[tensorboard]'")
    assert not (tmp_path / "run" / "last.pt").exists()
