"""Hostile names, torn and foreign result files, concurrent runs and failing machines (issue 17).

Each test is one kind of attack: what a hostile file name, a crash, a second run or a full disk does to a
scan, checked where the user meets it (the ``apn`` command, in-process or as a real process).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from apn_testing import save_tiny_checkpoint, write_image

APN = [sys.executable, "-m", "apncli"]


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode(), newline="")))


def _folder(root: Path, count: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        write_image(root / f"img{index}.png", seed=index)
    return root


# --- names are text, never markup or terminal commands ----------------------------------------------


def test_markup_and_escape_sequences_in_names_are_shown_as_text(run_apn, tiny_weights: Path,
                                                                tmp_path: Path) -> None:
    root = tmp_path / "f["
    root.mkdir()
    (root / "]x.png").write_bytes(b"not an image")  # the error line names "f[/]x.png": a markup closing tag
    (root / "\x1b[2Jclear.png").write_bytes(b"not an image")
    write_image(root / "[bold]ok.png")
    result = run_apn("scan", root, "--jsonl", "--weights", tiny_weights, "--no-provenance")
    assert result.code in (1, 3), result.stderr
    assert len(_jsonl(result.stdout)) == 3
    assert "f[/]x.png" in result.stderr and "\x1b" not in result.stderr
    assert "\\x1b[2Jclear.png" in result.stderr

    table = run_apn("scan", root, "--weights", tiny_weights, "--no-provenance")
    assert "[bold]ok.png" in table.stdout and "\\x1b[2Jclear.png" in table.stdout
    assert "\x1b" not in table.stdout


# --- resume: every image recorded exactly once ----------------------------------------------------------


@pytest.mark.parametrize(("fmt", "cut"), [("jsonl", "final newline"), ("csv", "final newline"),
                                         ("csv", "mid record")])  # a torn row that still holds its path
def test_resume_after_a_torn_last_record_records_every_image_once(run_apn, tiny_weights: Path, tmp_path: Path,
                                                                  fmt: str, cut: str) -> None:
    folder = _folder(tmp_path / "photos")
    out = tmp_path / f"results.{fmt}"
    args = ("scan", folder, "--out", out, "--weights", tiny_weights, "--no-provenance")
    assert run_apn(*args).code in (0, 1)
    data = out.read_bytes()
    torn = data.rstrip(b"\r\n") if cut == "final newline" else data[: len(data) - 20]
    out.write_bytes(torn)
    result = run_apn(*args, "--resume")
    assert result.code in (0, 1), result.stderr
    records = _csv(out) if fmt == "csv" else _jsonl(out.read_text())
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in folder.iterdir())


def test_csv_resume_keeps_names_with_carriage_returns(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "photos", count=2)
    write_image(folder / "a\rb.png", seed=9)
    out = tmp_path / "results.csv"
    args = ("scan", folder, "--out", out, "--weights", tiny_weights, "--no-provenance")
    assert run_apn(*args).code in (0, 1)
    assert run_apn(*args, "--resume").code in (0, 1)
    assert len(_csv(out)) == 3


@pytest.mark.parametrize("content", [b"garbage that is no result file\n", b"\x00\xff" * 50,
                                     b'{"manifest": {}, "records": [\n  {"path": "x.png"}\n]}\n',
                                     b'{"path": ' + b"[" * 5000 + b"\n"])
def test_resume_refuses_a_file_of_another_format_or_garbage(run_apn, tiny_weights: Path, tmp_path: Path,
                                                            content: bytes) -> None:
    image = write_image(tmp_path / "a.png")
    out = tmp_path / "results.jsonl"
    out.write_bytes(content)
    result = run_apn("scan", image, "--out", out, "--resume", "--weights", tiny_weights)
    assert result.code == 2
    assert "cannot resume" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == content


def test_resume_refuses_a_csv_onto_jsonl_output(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    out = tmp_path / "results.out"  # a name that promises no format: the content is what refuses --csv
    assert run_apn("scan", image, "--out", out, "--weights", tiny_weights).code in (0, 1)
    before = out.read_bytes()
    result = run_apn("scan", image, "--csv", "--out", out, "--resume", "--weights", tiny_weights)
    assert result.code == 2 and "cannot resume" in result.stderr
    assert out.read_bytes() == before


def test_resume_refuses_another_threshold_or_model_unless_forced(run_apn, tiny_weights: Path,
                                                                 tmp_path: Path) -> None:
    folder = _folder(tmp_path / "photos", count=2)
    out = tmp_path / "results.jsonl"
    assert run_apn("scan", folder / "img0.png", "--out", out, "--weights", tiny_weights).code in (0, 1)
    other_threshold = run_apn("scan", folder, "--out", out, "--resume", "--weights", tiny_weights,
                              "--threshold", "0.9")
    assert other_threshold.code == 2 and "threshold" in other_threshold.stderr
    other = save_tiny_checkpoint(tmp_path / "other.safetensors", seed=3)
    other_model = run_apn("scan", folder, "--out", out, "--resume", "--weights", other)
    assert other_model.code == 2 and "--force" in other_model.stderr
    assert len(_jsonl(out.read_text())) == 1
    forced = run_apn("scan", folder, "--out", out, "--resume", "--force", "--weights", other)
    assert forced.code in (0, 1) and len(_jsonl(out.read_text())) == 2


def test_resume_matches_files_by_resolved_path(run_apn, tiny_weights: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _folder(tmp_path / "photos", count=3)
    out = tmp_path / "results.jsonl"
    monkeypatch.chdir(tmp_path)
    assert run_apn("scan", "photos", "--out", out, "--weights", tiny_weights).code in (0, 1)
    again = run_apn("scan", tmp_path / "photos", "--out", out, "--resume", "--weights", tiny_weights)
    assert again.code in (0, 1)
    assert len(_jsonl(out.read_text())) == 3  # the same files, typed differently: nothing added
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    moved = run_apn("scan", "../photos", "--out", out, "--resume", "--weights", tiny_weights)
    assert moved.code == 2 and "folder the scan started in" in moved.stderr
    assert len(_jsonl(out.read_text())) == 3


def test_resume_exit_code_comes_from_the_whole_file(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "photos", count=2)
    out = tmp_path / "results.jsonl"
    args = ("scan", folder, "--out", out, "--weights", tiny_weights, "--threshold", "0")
    assert run_apn(*args).code == 1  # threshold 0: everything flagged
    assert run_apn(*args, "--resume").code == 1  # nothing left to scan; the file still holds flagged images


# --- one writer per output file -------------------------------------------------------------------------


def test_an_output_locked_by_another_run_is_refused(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    out = tmp_path / "results.out"  # a name that promises no format: the content is what refuses --csv
    assert run_apn("scan", image, "--out", out, "--weights", tiny_weights).code in (0, 1)
    before = out.read_bytes()
    with out.open("rb") as held:  # what a running scan holds
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        for extra in (("--resume",), ("--force",)):
            result = run_apn("scan", image, "--out", out, *extra, "--weights", tiny_weights)
            assert result.code == 2 and "another apn run" in result.stderr
    assert out.read_bytes() == before
    unclaimed = tmp_path / "unclaimed.jsonl"  # claimed at check time, given back if the start fails
    failed = run_apn("scan", image, "--out", unclaimed, "--weights", tmp_path / "missing.safetensors")
    assert failed.code == 2 and not unclaimed.exists()


@pytest.mark.slow
def test_two_scans_started_together_never_share_an_output(tiny_weights: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "photos", count=30)
    out = tmp_path / "results.jsonl"
    command = [*APN, "scan", str(folder), "--out", str(out), "--weights", str(tiny_weights),
               "--no-provenance", "--batch-size", "1", "--workers", "1"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(proc.wait(timeout=300), proc.stderr.read()) for proc in procs]
    assert sorted(code for code, _ in results)[0] in (0, 1)
    assert sorted(code for code, _ in results)[1] == 2, results
    records = _jsonl(out.read_text())
    assert sorted(r["path"] for r in records) == sorted(str(p) for p in folder.iterdir())


# --- output locations -----------------------------------------------------------------------------------


def test_out_creates_missing_folders_and_refuses_a_folder(run_apn, tiny_weights: Path,
                                                          tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    nested = tmp_path / "new" / "deeper" / "results.jsonl"
    manifest = tmp_path / "other" / "run.json"
    result = run_apn("scan", image, "--out", nested, "--manifest", manifest, "--weights", tiny_weights)
    assert result.code in (0, 1), result.stderr
    assert len(_jsonl(nested.read_text())) == 1 and json.loads(manifest.read_text())["model"]
    for option in ("--out", "--manifest"):
        refused = run_apn("scan", image, "--jsonl", option, tmp_path, "--weights", tiny_weights)
        assert refused.code == 2 and "is a folder" in refused.stderr, refused.stderr
    explained = run_apn("explain", image, "--out", tmp_path / "figs" / "new" / "a.png", "--weights",
                        tiny_weights, "--no-occlusion")
    assert explained.code in (0, 1) and (tmp_path / "figs" / "new" / "a.png").is_file()


def _limit_file_size(limit: int):
    def apply() -> None:  # a "full disk": writes past ``limit`` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_manifest_that_blocks_the_rerun(tiny_weights: Path,
                                                                                tmp_path: Path) -> None:
    image = write_image(tmp_path / "a.png")
    manifest = tmp_path / "run.json"
    command = [*APN, "scan", str(image), "--jsonl", "--manifest", str(manifest),
               "--weights", str(tiny_weights)]
    full = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(64))
    assert full.returncode == 2
    assert full.stderr.startswith("error: cannot write") and "unexpected" not in full.stderr
    assert not manifest.exists()
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode in (0, 1), rerun.stderr
    with open("/dev/full", "w") as disk_full:
        stdout_full = subprocess.run(command[:-4] + command[-2:], stdout=disk_full, stderr=subprocess.PIPE,
                                     text=True, timeout=120)
    assert stdout_full.returncode == 2 and "cannot write stdout" in stdout_full.stderr, stdout_full.stderr


# --- signals and stuck work -----------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_leaves_a_valid_document_and_a_resumable_file(tiny_weights: Path, tmp_path: Path) -> None:
    folder = _folder(tmp_path / "many", count=60)
    for fmt in ("json", "jsonl"):
        out = tmp_path / f"results.{fmt}"
        command = [*APN, "scan", str(folder), "--out", str(out), "--weights", str(tiny_weights),
                   "--no-provenance", "--batch-size", "1", "--workers", "1"]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.read_text().count('"path"') >= 3:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stderr
        assert "Traceback" not in stderr and "terminated" in stderr
        if fmt == "json":
            assert 3 <= len(json.loads(out.read_text())["records"]) < 60
        else:
            resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
            assert resumed.returncode in (0, 1), resumed.stderr
            assert sorted(r["path"] for r in _jsonl(out.read_text())) == sorted(
                str(p) for p in folder.iterdir())


STUCK_DECODE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from apncli.engine import pipeline
    real = pipeline.decode_windows
    def decode(path, *args, **kwargs):
        if Path(path).name == "stuck.png":
            time.sleep(30)
        return real(path, *args, **kwargs)
    pipeline.decode_windows = decode
    from apncli.cli.app import main
    sys.argv = ["apn", *sys.argv[1:]]
    main()
""")


@pytest.mark.slow
def test_a_timed_out_decode_neither_starves_the_queue_nor_delays_the_exit(tiny_weights: Path,
                                                                          tmp_path: Path) -> None:
    images = [write_image(tmp_path / name, seed=i) for i, name in enumerate(["a.png", "stuck.png", "z.png"])]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", STUCK_DECODE, "scan", *map(str, images), "--jsonl",
                           "--weights", str(tiny_weights), "--decode-timeout", "1", "--workers", "1",
                           "--no-provenance"], capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    records = {Path(r["path"]).name: r for r in _jsonl(proc.stdout)}
    assert records["stuck.png"]["error"] == "decode timed out after 1 s"
    assert records["z.png"]["p_ai"] is not None, records["z.png"]  # queued behind the stuck file
    assert proc.returncode in (1, 3)
    assert elapsed < 20, f"the process waited {elapsed:.1f} s for the abandoned decode"


# --- inputs that cannot be reached ------------------------------------------------------------------------


def test_a_named_unreachable_file_gets_a_record_with_out(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    good = write_image(tmp_path / "a.png")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    too_long = tmp_path / ("x" * 300 + ".png")
    out = tmp_path / "results.jsonl"
    result = run_apn("scan", loop, too_long, good, "--out", out, "--weights", tiny_weights)
    assert result.code == 3 or result.code == 1, result.stderr
    records = _jsonl(out.read_text())
    assert [r["error"] is None for r in records] == [False, False, True]


def test_folders_beyond_path_max_are_reported_not_dropped(tmp_path: Path) -> None:
    from apncli.data.discover import discover

    root = tmp_path / "deep"
    root.mkdir()
    start = os.open(".", os.O_RDONLY)
    try:
        os.chdir(root)
        for _ in range(20):  # 20 x 251 characters: well past PATH_MAX (4096)
            os.mkdir("d" * 250)
            os.chdir("d" * 250)
            write_image(Path("img.png"))
    finally:
        os.fchdir(start)
        os.close(start)
    candidates = list(discover([root], recursive=True))
    assert [c.error for c in candidates if c.error] == ["file name too long"]
    assert len(candidates) == 1 + sum(1 for c in candidates if c.error is None)


def _tiff_with_bits(path: Path, bits: int) -> Path:
    """A float grayscale TIFF whose header declares ``bits`` per sample (float16, float64)."""
    from PIL import Image

    Image.new("F", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    (ifd,) = struct.unpack("<I", data[4:8])
    for entry in range(ifd + 2, ifd + 2 + 12 * struct.unpack("<H", data[ifd:ifd + 2])[0], 12):
        if struct.unpack("<H", data[entry:entry + 2])[0] == 258:  # BitsPerSample
            data[entry + 8:entry + 10] = struct.pack("<H", bits)
    path.write_bytes(bytes(data))
    return path


def test_exotic_tiff_pixel_formats_are_called_unsupported_not_corrupt(run_apn, tiny_weights: Path,
                                                                       tmp_path: Path) -> None:
    from PIL import Image, TiffImagePlugin

    rgb_float = TiffImagePlugin.ImageFileDirectory_v2()
    rgb_float[339] = (3, 3, 3)  # SampleFormat: IEEE float, three channels
    Image.new("RGB", (8, 8)).save(tmp_path / "rgb-float.tif", tiffinfo=rgb_float)
    files = [_tiff_with_bits(tmp_path / "f16.tif", 16), _tiff_with_bits(tmp_path / "f64.tif", 64),
             tmp_path / "rgb-float.tif"]
    result = run_apn("scan", *files, "--jsonl", "--weights", tiny_weights, "--no-provenance")
    errors = [r["error"] for r in _jsonl(result.stdout)]
    assert len(errors) == 3 and all(e.startswith("unsupported pixel format") for e in errors), errors


# --- metadata and checkpoints that would exhaust the machine ---------------------------------------------


LIMITED_PROVENANCE = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
    from apncli.provenance import read_provenance
    print(read_provenance(sys.argv[1]).to_dict()["c2pa"]["error"])
""")


@pytest.mark.slow
def test_metadata_readers_stay_bounded_under_an_address_space_limit(tmp_path: Path) -> None:
    padded = write_image(tmp_path / "padded.jpg", size=(64, 64))
    with padded.open("r+b") as handle:
        handle.truncate(1 << 30)  # a small JPEG followed by 1 GiB of zeros (sparse: no disk used)
    proc = subprocess.run([sys.executable, "-c", LIMITED_PROVENANCE, str(padded)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip() == "file too large"


def _lying_checkpoint(path: Path, width: int) -> Path:
    """A tiny file whose config (inside every validated range) describes a network ``width`` wide."""
    from safetensors.torch import save_file

    from apncli.engine import checkpoint

    save_tiny_checkpoint(path)
    tensors, meta = checkpoint.load_checkpoint(path)
    config = meta["config"]
    config.update(feature_dim=width, base_rank=width // 2, classifier_hidden=[width] * 3,
                  convnext_widths=[width] * len(config["convnext_widths"]))
    save_file(tensors, str(path), metadata={"apn": json.dumps(meta)})
    return path


def test_a_network_over_the_parameter_budget_is_never_built(tmp_path: Path) -> None:
    from apncli.engine import checkpoint
    from apncli.errors import CheckpointError

    path = _lying_checkpoint(tmp_path / "bomb.safetensors", width=8192)  # 3.4 G parameters: 13 GB
    with pytest.raises(CheckpointError, match=r"3\.36 G parameters, over the 1 G limit"):
        checkpoint.check_declared_network(path)


def _with_sparse_tensor(path: Path, gib: int) -> Path:
    """Add a tensor of ``gib`` GiB of zeros to a checkpoint, as a sparse file (no disk or memory used)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header, data = json.loads(raw[8:8 + length]), raw[8 + length:]
    end = len(data) + (gib << 30)
    header["padding"] = {"dtype": "F32", "shape": [gib << 28], "data_offsets": [len(data), end]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    with path.open("r+b") as handle:
        handle.truncate(8 + len(text) + end)
    return path


LOAD_AND_MEASURE = textwrap.dedent("""
    import resource, sys, time
    from apncli.engine import Detector
    from apncli.errors import CheckpointError
    before, started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
    try:
        Detector.load(sys.argv[1], device="cpu")
        message = "loaded"
    except CheckpointError as exc:
        message = str(exc)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, time.monotonic() - started, message)
""")


@pytest.mark.parametrize(("bomb", "refusal"), [
    (lambda path: _lying_checkpoint(path, width=3072), "do not match"),  # 0.47 G parameters: 1.9 GB
    (lambda path: _with_sparse_tensor(save_tiny_checkpoint(path), gib=2), "'padding' is not a parameter"),
], ids=["config-of-a-big-network", "declared-2-GiB-sparse-tensor"])
def test_a_checkpoint_bomb_is_refused_before_anything_is_read_or_allocated(tmp_path: Path, bomb,
                                                                           refusal: str) -> None:
    path = bomb(tmp_path / "bomb.safetensors")
    proc = subprocess.run([sys.executable, "-c", LOAD_AND_MEASURE, str(path)], capture_output=True, text=True,
                          timeout=300)
    grown_kib, seconds, message = proc.stdout.strip().split(" ", 2)
    assert refusal in message
    assert float(seconds) < 10 and int(grown_kib) < 500_000, (grown_kib, seconds)  # nothing allocated


def test_deeply_nested_checkpoint_metadata_is_one_clear_error(run_apn, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from apncli.engine import checkpoint

    path = save_tiny_checkpoint(tmp_path / "nested.safetensors")
    tensors, meta = checkpoint.load_checkpoint(path)
    text = json.dumps(meta)[:-1] + ', "extra_nesting": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}"
    save_file(tensors, str(path), metadata={"apn": text})
    image = write_image(tmp_path / "a.png")
    result = run_apn("scan", image, "--json", "--weights", path)
    assert result.code == 2 and "nested deeper" in result.stderr and "unexpected" not in result.stderr


# --- explain and figures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(65535, 1), (1, 65535)])
def test_explain_extreme_aspect_ratios(run_apn, tiny_weights: Path, tmp_path: Path, size) -> None:
    image = write_image(tmp_path / "line.png", size=size)
    figure = tmp_path / "fig.png"
    result = run_apn("explain", image, "--out", figure, "--weights", tiny_weights, "--no-occlusion")
    assert result.code in (0, 1), result.stderr
    assert figure.stat().st_size > 0


def test_explain_dir_inside_the_scanned_tree_is_not_scanned(run_apn, tiny_weights: Path,
                                                            tmp_path: Path) -> None:
    folder = _folder(tmp_path / "photos", count=2)
    args = ("scan", folder, "-r", "--jsonl", "--weights", tiny_weights, "--threshold", "0",
            "--explain-dir", folder / "figures", "--no-provenance")
    first = run_apn(*args)
    assert first.code == 1 and len(list((folder / "figures").iterdir())) == 2
    second = run_apn(*args)
    assert [Path(r["path"]).name for r in _jsonl(second.stdout)] == ["img0.png", "img1.png"]


def test_outputs_of_one_run_may_not_share_a_file(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    """--out, --html and --manifest on one file would write over each other's results: refused up front."""
    image = write_image(tmp_path / "a.png")
    for first, second in (("--out", "--html"), ("--out", "--manifest"), ("--html", "--manifest")):
        same = tmp_path / f"same{first}{second}.json"
        result = run_apn("scan", image, first, same, second, same, "--weights", tiny_weights)
        assert result.code == 2 and "name the same file" in result.stderr and not same.exists()


@pytest.mark.slow
def test_a_failed_html_write_names_the_page_and_leaves_no_part_of_it(tiny_weights: Path,
                                                                      tmp_path: Path) -> None:
    """A "full disk" that takes the small JSONL but not the page: the error names the page, not the
    results file, and no half-written page is left behind."""
    image = write_image(tmp_path / "a.png", size=(64, 64))
    out, page = tmp_path / "results.jsonl", tmp_path / "report" / "page.html"
    command = [*APN, "scan", str(image), "--out", str(out), "--html", str(page),
               "--weights", str(tiny_weights)]
    full = subprocess.run(command, capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_file_size(16 << 10))
    assert full.returncode == 2 and f"cannot write {page}" in full.stderr, full.stderr
    assert "results.jsonl" not in full.stderr and len(out.read_text().splitlines()) == 1
    assert not page.exists() and list(page.parent.iterdir()) == []
