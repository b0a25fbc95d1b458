"""Replacing a report folder: the new one takes the old one's place whole, the old one is gone after, and no
failure loses the old one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from suite import atomic


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "accuracy.json").write_text(text)
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_exchange_swaps_two_folders_in_one_step(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a", "A"), _folder(tmp_path / "b", "B")
    inode_a = os.stat(a).st_ino
    assert atomic.exchange(a, b)
    assert (a / "accuracy.json").read_text() == "B" and (b / "accuracy.json").read_text() == "A"
    assert os.stat(b).st_ino == inode_a  # the same folder under the other name, not a copy


def test_exchange_of_a_missing_path_moves_nothing(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", "A")
    assert not atomic.exchange(a, tmp_path / "missing")
    assert (a / "accuracy.json").read_text() == "A" and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("can_exchange", [True, False], ids=["exchange", "two-renames"])
def test_the_new_folder_replaces_the_old_and_nothing_is_left_beside_it(
        tmp_path: Path, can_exchange: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not can_exchange:
        monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    old, new = _folder(tmp_path / "report", "old"), _folder(tmp_path / ".report.tmp", "new")
    atomic.replace_folder(new, old)
    assert (old / "accuracy.json").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["report"]


def test_the_old_folder_comes_back_when_the_new_cannot_take_its_place(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "exchange", lambda a, b: False)
    old, new = _folder(tmp_path / "report", "old"), _folder(tmp_path / ".report.tmp", "new")
    replace = os.replace

    def failing(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src) == new:
            raise OSError(28, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="No space"):
        atomic.replace_folder(new, old)
    assert (old / "accuracy.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".report.tmp", "report"]


def test_a_new_folder_where_there_was_none(tmp_path: Path) -> None:
    new = _folder(tmp_path / ".report.tmp", "new")
    atomic.replace_folder(new, tmp_path / "report")
    assert (tmp_path / "report" / "accuracy.json").read_text() == "new" and not new.exists()
