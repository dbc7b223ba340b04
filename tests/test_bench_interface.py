"""The benchmarks' interface that scripts rely on (docs/PERFORMANCE.md): each ``bench/NAME.py`` runs with
``python bench/NAME.py`` and offers ``--quick``. Their figures are measured by hand, never in tests."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parent.parent / "bench").glob("*.py"))


def test_there_are_benchmarks() -> None:
    assert len(BENCH) >= 8


@pytest.mark.parametrize("script", BENCH, ids=lambda path: path.stem)
def test_every_benchmark_offers_quick(script: Path) -> None:
    shown = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    assert "--quick" in shown.stdout
