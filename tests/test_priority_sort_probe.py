"""scripts/priority_sort_probe.py's arithmetic, against hand-worked examples."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from tests.helpers import load_script


@pytest.fixture(scope="module")
def probe() -> ModuleType:
    return load_script("priority_sort_probe")


def test_nearest_gap_is_per_output_in_priority_order(probe: ModuleType) -> None:
    priority = torch.tensor([[0.9, 0.2, 0.5, -0.5]])
    # outputs: 0.9 (nearest 0.5: 0.4), then 0.5 (nearest 0.2: 0.3)
    assert torch.allclose(probe.nearest_gap(priority, 2), torch.tensor([[0.4, 0.3]]))


def test_bucket_floor_counts_ties_as_half_and_separates_with_more_rows(probe: ModuleType) -> None:
    priority = torch.tensor([[0.9, 0.6, -0.5]])
    vectors = torch.tensor([[[1.0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]])
    # two rows: 0.9 and 0.6 share the top row; the mean [1, .5, .5, 0] ties on two bits of each
    assert torch.equal(probe.bucket_floor(priority, vectors, 2, rows=2), torch.tensor([[1.0, 1.0]]))
    # eight rows: 0.9 lands on row 7, 0.6 on row 6; nothing shared, nothing wrong
    assert torch.equal(probe.bucket_floor(priority, vectors, 2, rows=8), torch.zeros(1, 2))


def test_bucket_floor_gives_a_shared_row_to_the_majority(probe: ModuleType) -> None:
    priority = torch.tensor([[0.7, 0.9, 0.8]])
    vectors = torch.tensor([[[0.0], [1.0], [1.0]]])
    # one row for all three: the mean 2/3 reads as 1, wrong only for the lowest priority (0.7, last)
    assert torch.equal(probe.bucket_floor(priority, vectors, 3, rows=1), torch.tensor([[0.0, 0.0, 1.0]]))


def test_bucket_floor_lets_no_input_that_is_not_an_output_blur_one_that_is(probe: ModuleType) -> None:
    priority = torch.tensor([[0.9, 0.8]])
    vectors = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    assert torch.equal(probe.bucket_floor(priority, vectors, 1, rows=1), torch.zeros(1, 1))


def test_band_labels_are_fractions(probe: ModuleType) -> None:
    assert probe.band_label(1 / 128, 1 / 64) == "1/128-1/64"
    assert probe.band_label(0.0, 1 / 128) == "0-1/128"
    assert probe.band_label(1 / 8, 2.0) == "1/8 and more"


def test_unrolled_joins_a_head_that_wraps_around_the_ring(probe: ModuleType) -> None:
    peaks = torch.tensor([[126, 127, 0, 1]])
    assert torch.equal(probe.unrolled(peaks, 128), torch.tensor([[0, 1, 2, 3]]))


def test_correlation_ratio_is_near_one_for_separate_bands_and_zero_for_equal_means(probe: ModuleType) -> None:
    values = torch.tensor([0.1, 0.2, 0.8, 0.9])
    assert probe.correlation_ratio(values, torch.tensor([3, 3, 7, 7])) == pytest.approx(0.98)
    assert probe.correlation_ratio(values, torch.tensor([1, 2, 2, 1])) == pytest.approx(0.0, abs=1e-6)


def test_floor_table_without_a_run(probe: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    probe.print_floor([1, 1_000_000], [5], lists=200)
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    [one, many] = [[cell.strip() for cell in row] for row in rows]
    assert one[:2] == ["5", "1"] and float(one[2]) > 0 and one[3] != "100%"  # every input shares the row
    assert many == ["5", "1,000,000", "0.00", "100%"]  # rows far narrower than any gap
