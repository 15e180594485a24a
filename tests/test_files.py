"""runtime.files.write_atomic: a file appears whole, with the usual permissions, or not
at all."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.files import write_atomic


def test_written_whole_with_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "fit.json"
    old = os.umask(0o022)
    try:
        write_atomic(target, "{}\n")
    finally:
        os.umask(old)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["fit.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "fit.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.json"]
