import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks, "README.md should hold at least one python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    printed = capsys.readouterr().out
    # The example's claim: the exact odd/even rank is min(r_0, M)^(N/2) = 256.
    assert "(256, 256) 256" in printed
    assert "(32, 3)" in printed
    # The entanglement example: exact min-cut bounds, and S ≥ S_2 per class.
    assert "left/right: rank <= 16, ln 2.77" in printed
    assert "4x4 block: rank <= 8, ln 2.08" in printed
