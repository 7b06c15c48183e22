"""The README's Python examples run, and print what the README says they
print where a line is marked ``print(...)  # -> output``."""
import contextlib
import io
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _expected_output(code):
    """Lines the README documents as `print(...)  # -> <output>`."""
    return [line.rsplit("# ->", 1)[1].strip() for line in code.splitlines()
            if line.lstrip().startswith("print(") and "# ->" in line]


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example(code):
    for module in ("sklearn", "dask", "distributed"):
        if module in code:
            pytest.importorskip(module)
    expected = _expected_output(code)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    printed = buf.getvalue().splitlines()
    if expected:
        assert printed == expected
