"""Every Python snippet in the README runs, and the quick-start commands name real files."""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.slow  # moved from the fast step (over 8 s)
def test_python_snippets_run(monkeypatch, tmp_path):
    """In a scratch directory that sees the examples, so the files they write stay there."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks
    for code in blocks:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)
    assert 0.0 < float(namespace["fit"].values["theta"]) < 1.0


def test_quick_start_files_exist():
    bash = re.findall(r"```bash\n(.*?)```", README, re.S)[0]
    for word in shlex.split(bash):
        if word.startswith("examples/"):
            assert (ROOT / word).exists(), word
