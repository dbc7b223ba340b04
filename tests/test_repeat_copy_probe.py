"""scripts/repeat_copy_probe.py's arithmetic, on answers worked out by hand."""

from __future__ import annotations

from types import ModuleType, SimpleNamespace

import pytest
import torch

from memtool.tasks.algorithmic.repeat_copy import repeat_copy_sequences
from tests.helpers import load_script


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_script("repeat_copy_probe")


def _answering(logits: torch.Tensor):
    """A stand-in model whose answer steps are ``logits``, after as many input steps as asked."""
    return lambda inputs: SimpleNamespace(prediction=torch.cat([torch.zeros_like(logits), logits], 1))


def test_a_perfect_answer_has_no_wrong_bit_and_stops_where_it_should(probe: ModuleType) -> None:
    inputs, targets = repeat_copy_sequences(4, 3, 2, 5, (5.5, 2.87), torch.Generator().manual_seed(0))
    found = probe.measure(_answering(targets * 20 - 10), inputs, targets, repeats=2)
    assert found.wrong == 0 and found.per_repeat == [0, 0]
    assert found.fires_at == found.should == 6 and found.fired == 1


def test_a_wrong_bit_lands_in_its_repeat_and_an_early_marker_is_seen(probe: ModuleType) -> None:
    inputs, targets = repeat_copy_sequences(2, 3, 2, 5, (5.5, 2.87), torch.Generator().manual_seed(0))
    logits = targets * 20 - 10
    logits[0, 4, 0] *= -1  # sequence 0: one bit wrong in the second repeat (steps 3-5)
    logits[:, 2, 5] = 10  # both: the end marker fires at step 2 as well (a wrong bit each)
    found = probe.measure(_answering(logits), inputs, targets, repeats=2)
    assert found.per_repeat == [1.0, 0.5]  # the marker's bit in repeat 1, the flipped bit in repeat 2
    assert found.wrong == 1.5 and found.fires_at == 2 and found.fired == 1


def test_silence_is_wrong_on_every_one_bit_and_never_stops(probe: ModuleType) -> None:
    inputs, targets = repeat_copy_sequences(3, 4, 3, 6, (5.5, 2.87), torch.Generator().manual_seed(1))
    found = probe.measure(_answering(torch.full_like(targets, -10)), inputs, targets, repeats=3)
    assert found.wrong == pytest.approx(targets.sum().item() / 3)
    assert found.fires_at is None and found.fired == 0


def test_sizes_are_read_as_length_x_repeats(probe: ModuleType) -> None:
    assert probe.size("10x20") == (10, 20)
    for bad in ("10-20", "0x3", "x", "ax2"):
        with pytest.raises(Exception, match="LENGTHxREPEATS"):
            probe.size(bad)
