"""How the scripts beside the CLI (``scripts/``, ``bench/``) end: through ``memtool.errors.run_as_script``,
so bad input is one line and exit code 2, and a reader that stops early is no traceback."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "scripts").glob("*.py")) + sorted((ROOT / "bench").glob("*.py"))


def run_child(body: str) -> subprocess.Popen:
    program = (
        f"from memtool.errors import UserError, run_as_script\n\ndef main():\n{body}\n\nrun_as_script(main)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_script_ends_through_run_as_script(script: Path) -> None:
    text = script.read_text()
    assert text.rstrip().endswith('if __name__ == "__main__":\n    run_as_script(main)')
    # --help describes the script with its docstring's first paragraph, not a line cut mid-sentence
    assert 'argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])' in text
    # and every argument it takes says what it is for
    arguments = [
        node
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
    ]
    assert arguments and all(any(k.arg == "help" for k in node.keywords) for node in arguments), [
        ast.unparse(node) for node in arguments if not any(k.arg == "help" for k in node.keywords)
    ]


def test_a_reader_that_stops_early_ends_the_script_quietly() -> None:
    child = run_child("    for row in range(200_000):\n        print(f'| row {row} |')")
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline() == b"| row 0 |\n"
    child.stdout.close()  # as `| head -1` does
    assert child.wait(timeout=60) == 0
    assert child.stderr.read() == b""


def test_a_user_error_is_one_line_and_exit_code_2() -> None:
    child = run_child("    print('| a table |')\n    raise UserError('runs/x: no summary.json')")
    out, err = child.communicate(timeout=60)
    assert out == b"| a table |\n"
    assert child.returncode == 2
    assert err == b"error: runs/x: no summary.json\n"


def test_a_broken_pipe_that_is_not_stdout_stays_an_error() -> None:
    child = run_child("    print('| a table |')\n    raise BrokenPipeError(32, 'a subprocess went away')")
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1 and out == b"| a table |\n"
    assert b"BrokenPipeError" in err


def test_ctrl_c_is_one_line_and_exit_code_130() -> None:
    child = run_child("    raise KeyboardInterrupt")
    _, err = child.communicate(timeout=60)
    assert (child.returncode, err) == (130, b"interrupted\n")
