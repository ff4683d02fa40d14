"""What a new user meets around the records: input checks before the model loads, paths from pipes,
the end-of-run summary, help text, the table, and declared-AI files that cannot be missed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apn_testing import write_image
from PIL import Image, PngImagePlugin


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _fail_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load fails the test: these runs must be refused before it."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("apncli.engine.detector.Detector.load", refuse)


def test_missing_path_fails_before_the_model_loads(run_apn, tmp_path: Path, monkeypatch) -> None:
    _fail_model_load(monkeypatch)
    result = run_apn("scan", tmp_path / "missing.jpg", "--jsonl")
    assert result.code == 2
    assert "missing.jpg: no such file or directory" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["scan", "{missing}"], 2, "no such file or directory"),
    (["explain", "{missing}"], 2, "no such file or directory"),
    (["explain", "{missing}", "--out", "figure.jpg"], 2, "the figure is a PNG"),
    (["models", "list"], 0, ""),
    (["--help"], 0, ""),
])
def test_quick_answers_come_without_importing_torch(tmp_path: Path, argv: list[str], code: int,
                                                    message: str) -> None:
    """The real entry point in a fresh interpreter: help, the model list and bad inputs are answered before
    torch is even imported (it takes 2-8 s)."""
    argv = [a.format(missing=tmp_path / "missing.jpg") for a in argv]
    probe = ("import sys; from apncli.cli.app import app; from apncli.cli.common import run_guarded; "
             f"sys.argv = ['apn', *{argv!r}]; code = run_guarded(app); "
             "print(code, 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stderr.split()[-2:] == [str(code), "False"], done.stderr
    assert message in done.stderr


def test_folder_of_sub_folders_says_what_was_skipped(run_apn, tmp_path: Path, monkeypatch) -> None:
    _fail_model_load(monkeypatch)
    for name in ("2023", "2024", "2025"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        write_image(tmp_path / "photos" / name / "x.png")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = run_apn("scan", tmp_path / "photos")
    assert result.code == 2
    assert "0 images" in result.stderr and "3 sub-folders skipped (use -r" in result.stderr
    assert "1 other file skipped" in result.stderr


def test_empty_folder_exits_2_with_a_message(run_apn, tmp_path: Path, monkeypatch) -> None:
    _fail_model_load(monkeypatch)
    (tmp_path / "empty").mkdir()
    result = run_apn("scan", tmp_path / "empty", "--jsonl")
    assert result.code == 2 and "nothing to scan: 0 images" in result.stderr


def test_url_is_not_fetched(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    alone = run_apn("scan", "https://example.com/cat.jpg")
    assert alone.code == 2
    assert "https://example.com/cat.jpg: URLs are not fetched" in alone.stderr
    good = write_image(tmp_path / "ok.png")
    mixed = run_apn("scan", good, "https://example.com/cat.jpg", "--jsonl", "--weights", tiny_weights,
                    "--threshold", "1")
    url_record = _records(mixed.stdout)[1]
    assert url_record["path"] == "https://example.com/cat.jpg"  # as typed, not "https:/example.com"
    assert url_record["error"].startswith("URLs are not fetched")
    assert mixed.code == 3


def _tree(tmp_path: Path) -> list[Path]:
    (tmp_path / "in dir").mkdir()
    return [write_image(tmp_path / "in dir" / f"{name}.png", seed=i)
            for i, name in enumerate(("a", "b with space", "c\nnewline"))]


def test_find_print0_pipes_into_scan(tiny_weights: Path, tmp_path: Path) -> None:
    files = _tree(tmp_path)
    listing = b"".join(os.fsencode(path) + b"\0" for path in files)
    done = subprocess.run([sys.executable, "-m", "apncli", "scan", "-0", "-", "--jsonl", "--weights",
                           str(tiny_weights), "--no-provenance"],
                          input=listing, capture_output=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    records = _records(done.stdout.decode())
    assert [r["path"] for r in records] == [str(p) for p in files]
    assert all(r["error"] is None for r in records)


def test_files_from_one_path_per_line(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    files = _tree(tmp_path)[:2]
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    result = run_apn("scan", "--files-from", listing, "--jsonl", "--weights", tiny_weights)
    assert [r["path"] for r in _records(result.stdout)] == [str(p) for p in files]
    nothing = run_apn("scan", "--jsonl", "--weights", tiny_weights)
    assert nothing.code == 2 and "--files-from" in nothing.stderr


def test_empty_path_lists_are_named(tmp_path: Path) -> None:
    """`-` (or --files-from) was given: the message says the list was empty, not to give one."""
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for args, said in ((["-"], "standard input held no paths"),
                       (["--files-from", "-"], "standard input held no paths"),
                       (["-0", "-"], "standard input held no paths"),
                       (["--files-from", str(empty)], f"--files-from {empty} held no paths"),
                       (["-", "--files-from", str(empty)],
                        f"standard input and --files-from {empty} held no paths")):
        done = subprocess.run([sys.executable, "-m", "apncli", "scan", *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and done.stderr == f"error: nothing to scan: {said}\n", args


def test_end_of_run_summary_on_stderr(run_apn, tiny_weights: Path, mixed_folder: Path,
                                      tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    result = run_apn("scan", mixed_folder, "--out", out, "--weights", tiny_weights, "--threshold", "0")
    assert result.code == 1
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith("scanned 5 files in ")
    assert "2 ai-generated, 0 real, 3 unreadable" in summary
    assert summary.endswith(f"; 1 sub-folder not scanned (use -r); results in {out}")
    table = run_apn("scan", mixed_folder, "--weights", tiny_weights, "--threshold", "0")  # stdout: the table
    assert table.stderr.strip().splitlines()[-1].startswith("scanned 5 files in ")
    assert ": 2 ai-generated, 0 real, 3 unreadable; 1 sub-folder not scanned" in table.stderr
    quiet = run_apn("scan", mixed_folder / "a.png", "--jsonl", "--weights", tiny_weights, "-q")
    assert quiet.stderr == ""


def _declaring_ai(path: Path) -> Path:
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sd15")
    Image.open(write_image(path)).save(path, pnginfo=info)
    return path


def test_declared_ai_is_impossible_to_miss(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = _declaring_ai(tmp_path / "gen.png")
    result = run_apn("scan", image, "--weights", tiny_weights, "--threshold", "1")
    assert result.code == 4  # the pixels say real; the metadata says AI: a distinct exit code
    assert "real (declared AI)" in result.stdout
    assert "1 declares AI generation in metadata" in result.stdout  # the table's summary line
    jsonl = run_apn("scan", image, "--jsonl", "--weights", tiny_weights, "--threshold", "1")
    record = _records(jsonl.stdout)[0]
    assert record["verdict"] == "real" and record["provenance"]["summary"] == "declared-ai"
    assert jsonl.code == 4 and "declares AI" in jsonl.stderr
    flagged = run_apn("scan", image, "--jsonl", "--weights", tiny_weights, "--threshold", "0")
    assert flagged.code == 1  # a pixel verdict still wins


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_resume_keeps_exit_code_4_from_earlier_records(run_apn, tiny_weights: Path, tmp_path: Path,
                                                       fmt: str) -> None:
    """The exit code counts the whole file: a declared-AI record written before a resume still says 4."""
    out = tmp_path / f"results.{fmt}"
    args = ("--out", out, "--weights", tiny_weights, "--threshold", "1")
    assert run_apn("scan", _declaring_ai(tmp_path / "gen.png"), *args).code == 4
    plain = write_image(tmp_path / "plain.png")
    assert run_apn("scan", plain, tmp_path / "gen.png", *args, "--resume").code == 4


def test_help_has_no_type_tags_and_shows_defaults(run_apn, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    scan = run_apn("scan", "-h")
    assert scan.code == 0
    for tag in ("<bool>", "<list[", "<int", "<float", "<path>", "<str>"):
        assert tag not in scan.stdout
    assert "--batch-size" in scan.stdout and "N" in scan.stdout
    assert "[default: 16 on GPU; on CPU 16 crops of 128 px, 5 of 224 px]" in scan.stdout
    assert "[default: the checkpoint's, 4" in scan.stdout
    explain = run_apn("explain", "--help")
    assert "1 verdict ai-generated" in explain.stdout
    assert "3 nothing flagged but some files unreadable" not in explain.stdout


def test_table_keeps_long_paths_whole_and_counts_verdicts(run_apn, tiny_weights: Path, tmp_path: Path,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "and-an-even-longer-file-name-for-photo.png"
    deep.parent.mkdir()
    write_image(deep)
    result = run_apn("scan", deep, "--weights", tiny_weights, "--threshold", "1")
    assert str(deep) in result.stdout  # on one line, not folded mid-name
    assert "0 ai-generated, 1 real" in result.stdout


def _run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run ``apn`` with stdout and stderr on a pseudo-terminal, as a person sees it: (code, screen bytes)."""
    import pty

    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "apncli", *args], stdin=subprocess.DEVNULL,
                            stdout=follower, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_terminal_says_what_loads_and_how_far_the_scan_is(tiny_weights: Path, mixed_folder: Path) -> None:
    code, screen = _run_in_terminal(["scan", str(mixed_folder), "--weights", str(tiny_weights),
                                     "--no-provenance"])
    assert code in (1, 3)
    assert "loading the detector" in screen and "loaded in" in screen
    assert "/5" in screen and "/?" not in screen  # the progress bar knows the total
    assert "a.png" in screen and "unreadable" in screen


def test_manifest_gets_the_usual_file_mode(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "run.json"
    run_apn("scan", write_image(tmp_path / "x.png"), "--jsonl", "--weights", tiny_weights,
            "--manifest", manifest)
    mask = os.umask(0o022)
    os.umask(mask)
    assert manifest.stat().st_mode & 0o777 == 0o666 & ~mask


def test_table_says_how_much_of_each_image_was_analysed(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    """A large photo is judged on a few crops: the table says what share of its pixels that is."""
    write_image(tmp_path / "large.png", size=(320, 320))  # 4 tiles of 32 px: 4% of the pixels
    write_image(tmp_path / "small.png", size=(32, 32))
    result = run_apn("scan", tmp_path, "--weights", tiny_weights, "--no-provenance")
    header = next(line for line in result.stdout.splitlines() if "verdict" in line)
    assert "analysed" in header
    rows = {line.split()[-2]: line for line in result.stdout.splitlines() if ".png" in line}
    assert "4.0%" in rows[str(tmp_path / "large.png")] and "100%" in rows[str(tmp_path / "small.png")]


def test_bad_explain_dir_and_trust_anchors_fail_before_the_model_loads(run_apn, tmp_path: Path) -> None:
    """Like a missing input, a bad --explain-dir or --c2pa-trust-anchors must not cost a model load."""
    image = write_image(tmp_path / "a.png")
    not_a_folder = write_image(tmp_path / "figures.png")
    no_pem = tmp_path / "anchors.pem"
    no_pem.write_text("not a certificate\n")
    missing_weights = tmp_path / "missing.safetensors"  # would fail only once the model is loaded
    missing_pem = tmp_path / "nonexist.pem"
    for option, value, message in (
            ("--explain-dir", not_a_folder, "is not a folder"),
            ("--c2pa-trust-anchors", no_pem, "holds no PEM certificate"),
            ("--c2pa-trust-anchors", missing_pem, f"{missing_pem}: no such file or directory"),
            ("--c2pa-trust-anchors", tmp_path, f"{tmp_path}: is a directory")):
        result = run_apn("scan", image, option, value, "--weights", missing_weights)
        assert result.code == 2 and message in result.stderr and "missing.safetensors" not in result.stderr
        assert "Errno" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
