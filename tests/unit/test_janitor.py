"""Janitor sweeps and safe_filename against a hostile corpus."""

import os
import time
import unicodedata
from pathlib import Path

import pytest

from helpers.janitor import Janitor, safe_filename


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    for p in [path, *path.rglob("*")]:
        os.utime(p, (t, t), follow_symlinks=False)


def test_sweep_removes_old_orphans_only(tmp_path):
    j = Janitor(tmp_path / "Assets", max_age_s=1800)
    old, owned, young = j.job_dir(1), j.job_dir(2), j.job_dir(3)
    for d in (old, owned, young):
        (d / "part.bin").write_bytes(b"x" * 1000)
    _age(old, 3600)
    _age(owned, 3600)
    removed, freed = j.sweep(owned=[2])
    assert (removed, freed) == (1, 1000)
    assert not old.exists() and owned.exists() and young.exists()
    assert j.removed_total == 1


def test_live_file_in_old_folder_is_kept(tmp_path):
    j = Janitor(tmp_path / "Assets", max_age_s=1800)
    d = j.job_dir(4)
    f = d / "video.mp4"
    f.write_bytes(b"1")
    _age(d, 3600)
    os.utime(f, None)  # a transfer is still writing parts
    assert j.sweep(owned=[]) == (0, 0)
    assert d.exists()


def test_sweep_never_follows_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    j = Janitor(tmp_path / "Assets", max_age_s=0)
    link = j.assets_dir / "99"
    link.symlink_to(outside, target_is_directory=True)
    j.sweep(owned=[], now=time.time() + 10)
    assert not os.path.lexists(link)
    assert (outside / "keep.txt").read_text() == "precious"


def test_remove_job_dir(tmp_path):
    j = Janitor(tmp_path / "Assets")
    (j.job_dir(5) / "a").write_bytes(b"abc")
    assert j.remove_job_dir(5) == 3
    assert j.remove_job_dir(5) == 0
    with pytest.raises(ValueError):
        j.job_dir("../etc")


HOSTILE = [
    "../", "..", ".", "../../etc/passwd", "/etc/passwd", "..\\..\\windows\\win.ini",
    "a\x00b.txt", "\x00", "line\nbreak\r\t.txt", "\x1b[31mred\x1b[0m.mkv", "CON", "con",
    "NUL.txt", "nul .tar.gz", "COM1.log", "LPT9", "aux.", "x" * 300, "y" * 300 + ".mp4",
    "ж" * 300 + ".mkv", "видео 🎬 (2024).mp4", "evil\u202egpj.exe", "   ", "...", ". .",
    "a/../../b", "name.with.many.dots..", ".hidden", "e\u0301.txt", 'a<b>c:"d|e?f*g', "",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_safe_filename_hostile_corpus(tmp_path, name):
    out = safe_filename(name)
    assert out and "/" not in out and "\\" not in out and "\x00" not in out
    assert out not in (".", "..") and ".." not in Path(out).parts
    assert len(out.encode()) <= 128
    assert not any(unicodedata.category(c) == "Cc" for c in out)
    assert "\u202e" not in out
    assert out.split(".")[0].strip().upper() not in {"CON", "NUL", "COM1", "LPT9", "AUX"}
    job_dir = (tmp_path / "Assets" / "1").resolve()
    target = (job_dir / out).resolve()
    assert target.parent == job_dir


def test_safe_filename_specifics():
    assert safe_filename("") == "file"
    assert safe_filename(None) == "file"
    assert safe_filename("..", fallback="video.mp4") == "video.mp4"
    assert safe_filename("/etc/passwd") == "_etc_passwd"
    assert safe_filename("NUL.txt").endswith(".txt") and safe_filename("NUL.txt") != "NUL.txt"
    long = safe_filename("y" * 300 + ".mp4")
    assert long.endswith(".mp4") and len(long.encode()) == 128
    cyr = safe_filename("ж" * 300 + ".mkv")
    assert cyr.endswith(".mkv") and len(cyr.encode()) <= 128
    assert safe_filename("видео 🎬 (2024).mp4") == "видео 🎬 (2024).mp4"
    assert safe_filename("e\u0301.txt") == "\u00e9.txt"  # NFC
    assert safe_filename("a\x00b.txt") == "ab.txt"


def test_safe_filename_small_limit_is_respected():
    out = safe_filename("abcdef.verylongext", max_bytes=8)
    assert len(out.encode()) <= 8 and out


def test_file_path_stays_inside_job_dir(tmp_path):
    j = Janitor(tmp_path / "Assets")
    for name in HOSTILE:
        p = j.file_path(7, name).resolve()
        assert p.parent == (j.assets_dir / "7").resolve()
