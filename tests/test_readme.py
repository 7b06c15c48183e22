"""The README's Python examples run and print what the README says they print."""
import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _expected_output(code):
    """Lines the README documents as `print(...)  # <output>`."""
    return [c.strip() for line in code.splitlines()
            if line.lstrip().startswith("print(") and "#" in line
            for c in [line.rsplit("#", 1)[1]]]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example(code):
    if "sklearn" in code:
        pytest.importorskip("sklearn")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert buf.getvalue().splitlines() == _expected_output(code)
