"""Discovery: explicit files always, image files in folders, every problem a candidate with an error."""

from __future__ import annotations

import inspect
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apncli.data import discover as discover_module
from apncli.data.discover import SYMLINK_LOOP, Candidate, discover, display_path
from apncli.data.images import decode_image


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _relative(candidates: Iterator[Candidate] | list[Candidate], root: Path) -> list[tuple[str, str | None]]:
    return [(c.path.relative_to(root).as_posix(), c.error) for c in candidates]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name in (
        "b.jpg",
        "a.PNG",
        ".hidden.webp",
        "notes.txt",
        "c.tiff",
        "sub/d.gif",
        "sub/deeper/e.bmp",
        "sub/readme.md",
        "z/f.jpeg",
    ):
        _touch(tmp_path / name)
    return tmp_path


def test_folder_yields_its_own_image_files_sorted(tree: Path) -> None:
    assert _relative(discover([tree]), tree) == [
        (".hidden.webp", None),
        ("a.PNG", None),
        ("b.jpg", None),
        ("c.tiff", None),
    ]


def test_recursive_walk_is_depth_first_and_sorted(tree: Path) -> None:
    assert _relative(discover([tree], recursive=True), tree) == [
        (".hidden.webp", None),
        ("a.PNG", None),
        ("b.jpg", None),
        ("c.tiff", None),
        ("sub/d.gif", None),
        ("sub/deeper/e.bmp", None),
        ("z/f.jpeg", None),
    ]


def test_explicit_paths_keep_their_order_and_any_extension(tree: Path) -> None:
    paths = [tree / "notes.txt", tree / "sub", tree / "b.jpg", str(tree / "a.PNG").encode()]
    assert _relative(discover(paths), tree) == [
        ("notes.txt", None),
        ("sub/d.gif", None),
        ("b.jpg", None),
        ("a.PNG", None),
    ]


def test_a_single_path_is_not_split_into_characters(tree: Path) -> None:
    assert list(discover(str(tree / "b.jpg"))) == [Candidate(tree / "b.jpg")]
    assert list(discover(tree / "b.jpg")) == [Candidate(tree / "b.jpg")]


def test_empty_path_is_not_the_current_folder() -> None:
    assert list(discover([""])) == [Candidate(Path(), "empty path")]


def test_missing_path_is_a_candidate_with_an_error(tmp_path: Path) -> None:
    assert list(discover([tmp_path / "nope.jpg"])) == [
        Candidate(tmp_path / "nope.jpg", "no such file or directory")
    ]


def test_symlink_loops_are_reported_and_the_walk_ends(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "x.jpg")
    os.symlink(tmp_path, tmp_path / "a" / "back_to_root")
    os.symlink(tmp_path / "a", tmp_path / "a" / "self")
    os.symlink("loop.jpg", tmp_path / "loop.jpg")  # a link to itself
    assert _relative(discover([tmp_path], recursive=True), tmp_path) == [
        ("a/back_to_root", SYMLINK_LOOP),
        ("a/self", SYMLINK_LOOP),
        ("a/x.jpg", None),
        ("loop.jpg", SYMLINK_LOOP),
    ]
    assert list(discover([tmp_path / "loop.jpg"])) == [Candidate(tmp_path / "loop.jpg", SYMLINK_LOOP)]


def test_symlinked_folders_are_followed_when_not_a_loop(tmp_path: Path) -> None:
    _touch(tmp_path / "real" / "x.png")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    found = _relative(discover([tmp_path], recursive=True), tmp_path)
    assert found == [("alias/x.png", None), ("real/x.png", None)]


def test_dangling_links_with_image_names_are_reported(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    os.symlink(tmp_path / "gone", tmp_path / "dangling_folder")
    found = _relative(discover([tmp_path], recursive=True), tmp_path)
    assert found == [("dangling.jpg", "broken symbolic link")]
    assert list(discover([tmp_path / "dangling.jpg"])) == [
        Candidate(tmp_path / "dangling.jpg", "broken symbolic link")
    ]


def test_unreadable_folder_is_a_candidate_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _touch(tmp_path / "ok.jpg")
    _touch(tmp_path / "locked" / "secret.jpg")
    real_scandir = os.scandir

    def scandir(path: os.PathLike[str]) -> object:
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(discover_module.os, "scandir", scandir)
    assert _relative(discover([tmp_path], recursive=True), tmp_path) == [
        ("locked", "permission denied"),
        ("ok.jpg", None),
    ]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any folder")
def test_really_unreadable_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "locked" / "secret.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        assert _relative(discover([tmp_path], recursive=True), tmp_path) == [("locked", "permission denied")]
    finally:
        (tmp_path / "locked").chmod(0o755)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifos_are_not_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    assert list(discover([tmp_path])) == [Candidate(tmp_path / "pipe.jpg", "not a regular file")]
    assert list(discover([tmp_path / "pipe.jpg"])) == [Candidate(tmp_path / "pipe.jpg", "not a regular file")]


def test_non_utf8_names_are_found_decoded_and_printable(tmp_path: Path, tiny_rgb_png: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: not UTF-8
    try:
        (tmp_path / name).write_bytes(tiny_rgb_png.read_bytes())
    except (OSError, UnicodeError):
        pytest.skip("this file system insists on UTF-8 names")
    found = [c for c in discover([tmp_path]) if c.path.name == name]
    assert found == [Candidate(tmp_path / name)]
    assert decode_image(found[0].path).width == 16
    shown = display_path(found[0].path)
    assert shown.endswith("caf\\xe9-\\xff.png")
    json.dumps({"path": shown}, ensure_ascii=False).encode("utf-8")  # must not raise


def test_display_path_leaves_ordinary_names_alone() -> None:
    assert display_path(Path("photos/été 2024.jpg")) == "photos/été 2024.jpg"
    assert display_path(b"x\xff.jpg") == "x\\xff.jpg"
    assert display_path("odd\ud800é.jpg") == "odd\\ud800é.jpg"  # a surrogate no file system made


def test_walk_streams_one_folder_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(30):
        _touch(tmp_path / f"d{i:02d}" / "x.jpg")
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path: os.PathLike[str]) -> object:
        listed.append(Path(path).name)
        return real_scandir(path)

    monkeypatch.setattr(discover_module.os, "scandir", scandir)
    stream = discover([tmp_path], recursive=True)
    assert next(stream).path == tmp_path / "d00" / "x.jpg"
    assert len(listed) == 2  # the root and the first sub-folder, nothing more yet


def test_very_deep_trees_do_not_hit_the_recursion_limit(tmp_path: Path) -> None:
    chain = [tmp_path / "deep"]
    for _ in range(200):
        chain.append(chain[-1] / "d")
    for folder in chain:  # one by one: mkdir(parents=True) itself recurses
        folder.mkdir()
    _touch(chain[-1] / "bottom.jpg")
    limit = sys.getrecursionlimit()
    # A walk spending one frame per level would overflow this limit; an iterative one does not care.
    sys.setrecursionlimit(len(inspect.stack()) + 60)
    try:
        found = [c.path for c in discover([tmp_path], recursive=True)]
    finally:
        sys.setrecursionlimit(limit)
    assert found == [chain[-1] / "bottom.jpg"]
