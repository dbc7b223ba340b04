"""The NTM's addressing stages, read and write against hand-computed values (Graves et al. 2014, Sec. 3)."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from memtool.config import build_config
from memtool.engine import train
from memtool.models.ntm import NTM, content_weights, interpolate, read, sharpen, shift, write

SMOKE = Path(__file__).resolve().parent.parent / "smoke"


def test_content_addressing_is_a_softmax_of_strength_times_cosine() -> None:
    memory = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3 rows, 2)
    key = torch.tensor([[[3.0, 0.0]]])  # cosines with the rows: 1, 0, 1/√2
    weights = content_weights(memory, key, torch.tensor([[2.0]]))
    scores = torch.tensor([2.0, 0.0, 2 / math.sqrt(2)])
    torch.testing.assert_close(weights[0, 0], scores.softmax(0))


def test_interpolation_mixes_content_and_previous_by_the_gate() -> None:
    content, previous = torch.tensor([[[1.0, 0.0, 0.0]]]), torch.tensor([[[0.0, 0.0, 1.0]]])
    torch.testing.assert_close(
        interpolate(content, previous, torch.tensor([[0.25]])), torch.tensor([[[0.25, 0, 0.75]]])
    )


def test_shift_is_a_circular_convolution_that_wraps_around() -> None:
    weights = torch.tensor([[[0.0, 0.0, 0.0, 1.0]]])  # on the last row
    forward = torch.tensor([[[0.0, 0.0, 1.0]]])  # all mass on offset +1
    torch.testing.assert_close(
        shift(weights, forward), torch.tensor([[[1.0, 0.0, 0.0, 0.0]]])
    )  # wraps to row 0
    spread = torch.tensor([[[0.5, 0.25, 0.25]]])  # offsets -1, 0, +1
    torch.testing.assert_close(shift(weights, spread), torch.tensor([[[0.25, 0.0, 0.5, 0.25]]]))


def test_sharpening_raises_to_gamma_and_renormalises() -> None:
    weights = torch.tensor([[[0.5, 0.3, 0.2]]])
    expected = weights**2 / (weights**2).sum()
    torch.testing.assert_close(sharpen(weights, torch.tensor([[2.0]])), expected, atol=1e-6, rtol=1e-5)


def test_a_write_with_erase_1_and_weight_1_clears_the_row_then_adds() -> None:
    memory = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    weights = torch.tensor([[1.0, 0.0]])
    cleared = write(memory, weights, erase=torch.ones(1, 2), add=torch.zeros(1, 2))
    torch.testing.assert_close(cleared, torch.tensor([[[0.0, 0.0], [3.0, 4.0]]]))
    written = write(memory, weights, erase=torch.ones(1, 2), add=torch.tensor([[7.0, -1.0]]))
    torch.testing.assert_close(written, torch.tensor([[[7.0, -1.0], [3.0, 4.0]]]))
    half = write(memory, torch.tensor([[0.5, 0.5]]), erase=torch.tensor([[1.0, 0.0]]), add=torch.zeros(1, 2))
    torch.testing.assert_close(half, torch.tensor([[[0.5, 2.0], [1.5, 4.0]]]))  # M(1 - w e) exactly
    torch.testing.assert_close(read(written, torch.tensor([[[0.5, 0.5]]])), torch.tensor([[[5.0, 1.5]]]))


def test_weightings_sum_to_one_and_stay_finite_under_extreme_inputs() -> None:
    memory = torch.zeros(2, 5, 3)  # an empty memory and a zero key: cosine 0/0 must not be NaN
    key = torch.zeros(2, 1, 3)
    weights = content_weights(memory, key, torch.full((2, 1), 1e6))
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1))
    peaked = torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]]])
    sharp = sharpen(peaked, torch.tensor([[1e4]]))  # huge γ on exact zeros
    assert torch.isfinite(sharp).all()
    torch.testing.assert_close(sharp.sum(-1), torch.ones(1, 1))


def _model(**options) -> NTM:
    torch.manual_seed(0)
    return NTM(input_size=4, output_size=3, controller_size=12, memory_rows=6, memory_width=5, **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"interpolation": False, "shifting": False, "sharpening": False, "memory_init": "random"},
     {"controller": "feedforward"},
     {"read_heads": 2, "write_heads": 2, "memory_init": "random"}],
)  # fmt: skip
def test_the_trace_holds_weightings_that_sum_to_one_per_head_and_step(options: dict) -> None:
    model = _model(**options).eval()
    inputs = torch.randn(3, 7, 4) * 100  # large inputs: outputs are clipped, nothing overflows
    output = model(inputs=inputs, trace_memory=True)
    assert output.prediction.shape == (3, 7, 3) and torch.isfinite(output.prediction).all()
    for name in ("read_weights", "write_weights"):
        weights = output.trace[name]
        assert weights.shape[:2] == (3, 7) and weights.shape[-1] == 6
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    assert output.trace["memory"].shape == (3, 7, 6, 5)  # recorded when asked for
    assert "memory" not in model(inputs=inputs).trace  # not while training or scoring


def test_the_batch_steps_together_each_sequence_as_if_alone() -> None:
    model = _model().eval()
    inputs = torch.randn(4, 5, 4)
    together = model(inputs=inputs).prediction
    alone = torch.cat([model(inputs=inputs[i : i + 1]).prediction for i in range(4)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_the_write_head_writes_into_the_memory_the_read_head_reads() -> None:
    """Wire a hand-made step: the engine-free forward must apply Eq. 3-4 to the memory it returns."""
    model = _model().eval()
    output = model(inputs=torch.randn(1, 2, 4), trace_memory=True)
    w, e, a = (
        output.trace["write_weights"][0, 0, 0],
        output.trace["erase"][0, 0, 0],
        output.trace["add"][0, 0, 0],
    )
    expected = write(model.memory_init.unsqueeze(0), w.unsqueeze(0), e.unsqueeze(0), a.unsqueeze(0))
    torch.testing.assert_close(output.trace["memory"][0, 0], expected[0])


def test_train_compile_compiles_the_step_function_not_the_loop_over_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring only: a real compile takes minutes on 2 cores (bench/ntm_speed.py --compile measures
    it). The stand-in returns the function unchanged, so the run must equal an uncompiled one exactly."""
    compiled: list[str] = []

    def fake_compile(function, **options):
        compiled.append(f"{function.__name__} dynamic={options.get('dynamic')}")
        return function

    monkeypatch.setattr(torch, "compile", fake_compile)
    raw = yaml.safe_load((SMOKE / "ntm-copy.yaml").read_text())
    plain = train(build_config(raw), tmp_path / "plain")
    raw["train"]["compile"] = True
    fast = train(build_config(raw), tmp_path / "compiled")
    assert compiled == ["step dynamic=True"]
    assert fast.test.metrics == plain.test.metrics


def test_write_heads_apply_in_head_order_on_the_memory_the_step_found() -> None:
    """Both write heads address the memory as the step found it; their erase and add then apply in
    head order, the second to what the first left."""
    model = _model(write_heads=2, memory_init="random").eval()
    output = model(inputs=torch.randn(1, 1, 4), trace_memory=True)
    w, e, a = (output.trace[name][0, 0] for name in ("write_weights", "erase", "add"))
    start = model.memory_init.unsqueeze(0)
    in_order = write(write(start, w[None, 0], e[None, 0], a[None, 0]), w[None, 1], e[None, 1], a[None, 1])
    torch.testing.assert_close(output.trace["memory"][0, 0], in_order[0])
    backwards = write(write(start, w[None, 1], e[None, 1], a[None, 1]), w[None, 0], e[None, 0], a[None, 0])
    assert not torch.allclose(in_order, backwards)  # the order is a real choice, and this is the one made


def test_content_addressing_alone_needs_rows_that_differ_from_the_start() -> None:
    """With a constant (or learned, which starts constant) memory every row is alike, so without the
    gate content weights are uniform, every write adds the same to each row and they never come apart:
    refused. With a random start the rows differ and the weightings do not spread evenly."""
    from memtool.build import create_model
    from memtool.errors import UserError

    content_only = {"input_size": 4, "output_size": 3, "memory_rows": 6, "memory_width": 5,
                    "interpolation": False, "shifting": False, "sharpening": False}  # fmt: skip
    for start in ("constant", "learned"):  # the learned start begins as the constant one
        with pytest.raises(UserError, match=f"interpolation false with memory_init {start}: every row"):
            create_model("ntm", {**content_only, "memory_init": start})
    with pytest.raises(UserError, match="interpolation false with memory_init constant"):
        create_model("ntm", {**content_only, "shifting": True})  # a shifted uniform weighting is uniform
    model = create_model("ntm", {**content_only, "memory_init": "random"}).eval()
    output = model(inputs=torch.randn(2, 5, 4), trace_memory=True)
    memory = output.trace["memory"][:, -1]  # (B, rows, width)
    assert (memory - memory[:, :1]).abs().amax() > 1e-3  # the rows differ
    assert output.trace["write_weights"].std(-1).amin() > 1e-4  # no weighting is uniform


def test_a_shift_wider_than_the_memory_is_one_line_naming_the_keys() -> None:
    from memtool.build import create_model
    from memtool.errors import UserError

    expected = r"model: shift_range 10 .* 16 memory_rows; lower shift_range to at most 7 \(model ntm\)"
    with pytest.raises(UserError, match=expected):
        create_model("ntm", {"input_size": 3, "output_size": 2, "memory_rows": 16, "shift_range": 10})


def test_a_forward_shift_bias_starts_every_head_leaning_one_row_forward() -> None:
    torch.manual_seed(0)
    plain = NTM(4, 3, memory_rows=8, read_heads=2, write_heads=1)
    torch.manual_seed(0)
    leaning = NTM(4, 3, memory_rows=8, read_heads=2, write_heads=1, forward_shift_bias=2.0)
    added = (leaning.head_parameters.bias - plain.head_parameters.bias)[: 3 * plain.addressing_size]
    shift_part = added.view(3, -1)[:, plain.width + 2 : plain.width + 5]  # offsets -1, 0, +1 per head
    assert torch.equal(shift_part, torch.tensor([[0.0, 0.0, 2.0]] * 3))
    assert added.abs().sum() == 6  # nothing else moved
    start = torch.zeros(1, 3, 8)
    start[..., 0] = 1
    moved = shift(start, torch.softmax(shift_part, -1).unsqueeze(0))
    assert bool((moved[..., 1] > 0.7).all())  # the added logit is the one that steps to row 1
