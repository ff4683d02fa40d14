"""``apn scan`` as a shell script uses it: records, formats, exit codes, no tracebacks."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from apn_testing import save_tiny_checkpoint, write_image

RECORD_KEYS = {"path", "p_ai", "verdict", "threshold", "model", "width", "height", "crops", "error",
               "analysed_fraction", "padded", "textured_fraction", "low_signal", "has_alpha",
               "transparent_fraction"}


def _records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_jsonl_one_valid_record_per_candidate(run_apn, tiny_weights: Path, mixed_folder: Path) -> None:
    result = run_apn("scan", mixed_folder, "--recursive", "--jsonl", "--weights", tiny_weights,
                     "--no-provenance")
    records = _records(result.stdout)
    names = sorted(Path(r["path"]).name for r in records)
    assert names == ["B.JPG", "a.png", "c.webp", "empty.png", "text.jpg", "truncated.png"]
    for record in records:  # one schema for every record, unreadable files included
        assert record.keys() == RECORD_KEYS
        assert record["model"]["name"] and len(record["model"]["sha256"]) == 64
        if record["error"] is None:
            assert 0.0 <= record["p_ai"] <= 1.0
            assert record["verdict"] in {"ai-generated", "real", "inconclusive"}
            assert record["width"] == 40 and record["height"] == 30
        else:
            assert record["p_ai"] is None and record["verdict"] is None
            assert "\n" not in record["error"]
    assert "Traceback" not in result.stderr
    flagged = any(r["verdict"] == "ai-generated" for r in records)
    assert result.code == (1 if flagged else 3)


def test_without_recursive_only_top_level(run_apn, tiny_weights: Path, mixed_folder: Path) -> None:
    result = run_apn("scan", mixed_folder, "--jsonl", "--weights", tiny_weights, "--no-provenance")
    assert "c.webp" not in result.stdout
    assert len(_records(result.stdout)) == 5


def test_threshold_decides_exit_code(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png")
    flagged = run_apn("scan", image, "--jsonl", "--weights", tiny_weights, "--threshold", "0")
    assert flagged.code == 1 and _records(flagged.stdout)[0]["verdict"] == "ai-generated"
    clean = run_apn("scan", image, "--jsonl", "--weights", tiny_weights, "--threshold", "1")
    assert clean.code == 0 and _records(clean.stdout)[0]["verdict"] == "real"


def test_inconclusive_band_from_checkpoint(run_apn, tmp_path: Path) -> None:
    weights = save_tiny_checkpoint(tmp_path / "band.safetensors", threshold=0.5, band=(0.0, 1.0))
    image = write_image(tmp_path / "x.png")
    result = run_apn("scan", image, "--jsonl", "--weights", weights)
    assert _records(result.stdout)[0]["verdict"] == "inconclusive"
    assert result.code == 0


def test_json_document_has_manifest_and_records(run_apn, tiny_weights: Path, mixed_folder: Path) -> None:
    result = run_apn("scan", mixed_folder, "--json", "--weights", tiny_weights, "--no-provenance")
    document = json.loads(result.stdout)
    assert document["manifest"]["apn_version"]
    assert document["manifest"]["model"]["sha256"] == document["records"][0]["model"]["sha256"]
    assert document["manifest"]["model"]["device"] == "cpu"
    assert len(document["records"]) == 5


def test_csv_has_header_and_rows(run_apn, tiny_weights: Path, mixed_folder: Path) -> None:
    result = run_apn("scan", mixed_folder, "--csv", "--weights", tiny_weights, "--no-provenance")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 5
    assert {"path", "p_ai", "verdict", "model_sha256", "error"} <= rows[0].keys()


def test_table_output_lists_files(run_apn, tiny_weights: Path, mixed_folder: Path) -> None:
    result = run_apn("scan", mixed_folder, "--weights", tiny_weights, "--no-provenance")
    assert "a.png" in result.stdout and "B.JPG" in result.stdout


def test_nothing_readable_exits_2(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    result = run_apn("scan", tmp_path / "bad.png", "--jsonl", "--weights", tiny_weights)
    assert result.code == 2
    assert len(_records(result.stdout)) == 1
    assert "bad.png" in result.stderr


def test_missing_path_is_a_record_not_a_crash(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    good = write_image(tmp_path / "ok.png")
    result = run_apn("scan", good, tmp_path / "missing.png", "--jsonl", "--weights", tiny_weights)
    records = _records(result.stdout)
    assert [r["error"] is None for r in records] == [True, False]


def test_no_default_model_says_how_to_pass_weights(run_apn, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("apncli.engine.registry.default_name", lambda: None)
    result = run_apn("scan", write_image(tmp_path / "x.png"), "--jsonl")
    assert result.code == 2
    assert "--weights" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_flags_are_usage_errors(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png")
    assert run_apn("scan", image, "--json", "--csv", "--weights", tiny_weights).code == 2
    assert run_apn("scan", image, "--threshold", "2", "--weights", tiny_weights).code == 2
    assert run_apn("scan", image, "--device", "tpu", "--weights", tiny_weights).code == 2


def test_out_refuses_to_clobber_and_resume_skips_done(run_apn, tiny_weights: Path, mixed_folder: Path,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    first = run_apn("scan", mixed_folder / "a.png", "--out", out, "--weights", tiny_weights)
    assert first.stdout == "" and len(_records(out.read_text())) == 1
    again = run_apn("scan", mixed_folder, "--out", out, "--weights", tiny_weights)
    assert again.code == 2 and "--force" in again.stderr
    with out.open("a") as handle:  # simulate a kill in the middle of a line
        handle.write('{"path": "torn')
    resumed = run_apn("scan", mixed_folder, "--out", out, "--resume", "--weights", tiny_weights)
    records = _records(out.read_text())
    assert sorted(Path(r["path"]).name for r in records) == sorted(
        ["a.png", "B.JPG", "empty.png", "text.jpg", "truncated.png"])
    assert resumed.code in (1, 3)
    kept = f"already in {out}: kept, not rescanned"
    assert "scanned 4 files in " in resumed.stderr and f" (1 {kept}): " in resumed.stderr
    finished = run_apn("scan", mixed_folder, "--out", out, "--resume", "--weights", tiny_weights)
    summary = finished.stderr.strip().splitlines()[-1]
    assert summary.startswith("scanned 0 files in ")
    assert f" s (5 {kept}); 1 sub-folder not scanned (use -r); results in {out}" in summary


def test_out_suffix_picks_the_format_and_a_contradicting_flag_is_refused(run_apn, tiny_weights: Path,
                                                                         tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    shown = " ".join(re.sub(r"[│╭╮╰╯─]", " ", run_apn("scan", "--help").stdout).split())
    assert "its suffix picks the format: .json a JSON document, .csv CSV, any other JSONL" in shown
    image = write_image(tmp_path / "x.png")
    contradictions = (("a.csv", "--json"), ("b.json", "--csv"), ("c.jsonl", "--json"), ("d.JSON", "--jsonl"))
    for name, flag in contradictions:
        out = tmp_path / name
        refused = run_apn("scan", image, "--out", out, flag, "--force", "--weights", tmp_path / "no-model")
        assert refused.code == 2 and not out.exists(), (name, flag)  # refused before the model loads
        assert refused.stderr.startswith(f"error: --out {out} names a ")
        assert refused.stderr.endswith("change the file name or drop the flag\n")
        assert len(refused.stderr.splitlines()) == 1
    plain = tmp_path / "res" / "out.txt"  # no flag, no known suffix: JSONL
    assert run_apn("scan", image, "--out", plain, "--weights", tiny_weights).code in (0, 1)
    assert _records(plain.read_text())[0]["path"] == str(image)
    document = tmp_path / "x.json"  # no flag: the suffix picks a JSON document
    run_apn("scan", image, "--out", document, "--weights", tiny_weights)
    assert json.loads(document.read_text())["records"][0]["path"] == str(image)
    flagged = tmp_path / "y.txt"  # a flag and a suffix that promises nothing: the flag
    run_apn("scan", image, "--out", flagged, "--csv", "--weights", tiny_weights)
    assert flagged.read_text().startswith("path,p_ai,")


def test_out_never_overwrites_an_input(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png")
    result = run_apn("scan", image, "--out", image, "--force", "--weights", tiny_weights)
    assert result.code == 2 and "input" in result.stderr
    assert image.read_bytes()[:4] == b"\x89PNG"
    hard_link = tmp_path / "hard.png"
    os.link(image, hard_link)
    # A hard link to an input file, and an image inside a scanned folder, are inputs too.
    for scanned, target in ((image, hard_link), (tmp_path, image)):
        result = run_apn("scan", scanned, "--out", target, "--force", "--weights", tiny_weights)
        assert result.code == 2 and "input" in result.stderr
    assert image.read_bytes()[:4] == b"\x89PNG"


def test_console_script_subprocess(tiny_weights: Path, mixed_folder: Path) -> None:
    """The real process: exit code, JSONL on stdout, one-line errors on stderr, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "apncli", "scan", str(mixed_folder), "--jsonl",
                           "--weights", str(tiny_weights), "--no-provenance"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode in (1, 3)
    assert len(_records(proc.stdout)) == 5
    assert "Traceback" not in proc.stderr
    *errors, summary = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 3 and all(line.startswith("error:") for line in errors)
    assert summary.startswith("scanned 5 files in ")


def test_provenance_is_reported_beside_the_score(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    """Declared metadata appears in the record and never changes p_ai."""
    from PIL import Image, PngImagePlugin

    plain = write_image(tmp_path / "plain.png", seed=5)
    labelled = tmp_path / "labelled.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a cat, Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sd15")
    Image.open(plain).save(labelled, pnginfo=info)
    result = run_apn("scan", plain, labelled, "--jsonl", "--weights", tiny_weights)
    plain_record, labelled_record = _records(result.stdout)
    assert labelled_record["provenance"]["summary"] == "declared-ai"
    assert plain_record["provenance"]["summary"] == "none"
    assert plain_record["p_ai"] == labelled_record["p_ai"]
    table = run_apn("scan", labelled, "--weights", tiny_weights)
    assert "declared-ai" in table.stdout
    bad_anchor = tmp_path / "anchors.pem"
    bad_anchor.write_text("not a certificate")
    assert run_apn("scan", plain, "--weights", tiny_weights, "--c2pa-trust-anchors", bad_anchor).code == 2


def test_explain_dir_writes_a_figure_per_flagged_image(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    from PIL import Image

    images = [write_image(tmp_path / f"x{i}.png", seed=i) for i in range(2)]
    figures = tmp_path / "figures"
    result = run_apn("scan", *images, "--jsonl", "--weights", tiny_weights, "--threshold", "0",
                     "--explain-dir", figures, "--no-provenance")
    records = _records(result.stdout)
    assert result.code == 1 and all(r["verdict"] == "ai-generated" for r in records)
    written = sorted(figures.iterdir())
    assert len(written) == 2 and sorted(r["figure"] for r in records) == [str(p) for p in written]
    assert all(Image.open(p).format == "PNG" for p in written)
    assert all(r["figure_error"] is None for r in records)


def test_explain_dir_gives_every_record_the_figure_keys(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    """README: every record has every key. With --explain-dir that includes ``figure`` (null when none was
    drawn: not flagged, or unreadable), in JSONL and as CSV columns; a resumed output keeps one shape."""
    images = [write_image(tmp_path / f"x{i}.png", seed=i) for i in range(2)]
    (tmp_path / "broken.png").write_text("not an image")
    inputs = (*images, tmp_path / "broken.png")
    flag_none = ("--weights", tiny_weights, "--threshold", "1", "--no-provenance")
    jsonl = _records(run_apn("scan", *inputs, "--jsonl", *flag_none, "--explain-dir", tmp_path / "f").stdout)
    assert len(jsonl) == 3 and all(r["figure"] is None and r["figure_error"] is None for r in jsonl)
    assert all(set(r) == RECORD_KEYS | {"figure", "figure_error"} for r in jsonl)
    rows = list(csv.DictReader(io.StringIO(run_apn("scan", *inputs, "--csv", *flag_none, "--explain-dir",
                                                   tmp_path / "f").stdout)))
    assert len(rows) == 3 and all(row["figure"] == "" and row["figure_error"] == "" for row in rows)
    flagged = run_apn("scan", images[0], "--csv", "--weights", tiny_weights, "--threshold", "0",
                      "--explain-dir", tmp_path / "f", "--no-provenance")
    assert next(csv.DictReader(io.StringIO(flagged.stdout)))["figure"].startswith(str(tmp_path / "f"))
    plain = run_apn("scan", images[0], "--csv", *flag_none)  # no --explain-dir: no figure columns
    assert "figure" not in plain.stdout.splitlines()[0] and "figure" not in _records(
        run_apn("scan", images[0], "--jsonl", *flag_none).stdout)[0]
    out = tmp_path / "out.csv"
    run_apn("scan", images[0], "--out", out, *flag_none, "--explain-dir", tmp_path / "f")
    mixed = run_apn("scan", *images, "--out", out, "--resume", *flag_none)
    assert mixed.code == 2 and "written with --explain-dir" in mixed.stderr
    resumed = run_apn("scan", *images, "--out", out, "--resume", *flag_none, "--explain-dir", tmp_path / "f")
    assert resumed.code == 0 and [len(row) for row in csv.reader(io.StringIO(out.read_text()))] == [19] * 3
    lines = tmp_path / "out.jsonl"  # JSONL too: one file never mixes records with and without the keys
    run_apn("scan", images[0], "--out", lines, *flag_none)
    mixed = run_apn("scan", *images, "--out", lines, "--resume", *flag_none, "--explain-dir", tmp_path / "f")
    assert mixed.code == 2 and "written without --explain-dir" in mixed.stderr
    assert len(mixed.stderr.splitlines()) == 1 and len(_records(lines.read_text())) == 1
    resumed = run_apn("scan", *images, "--out", lines, "--resume", *flag_none)
    assert resumed.code == 0 and all("figure" not in r for r in _records(lines.read_text()))


def test_lying_checkpoints_are_refused_in_one_line(run_apn, tmp_path: Path) -> None:
    """Metadata that lies about the network, or a pickle, never loads and never prints a traceback."""
    from apn_testing import checkpoint_metadata, tiny_model

    from apncli.engine import checkpoint
    from apncli.model import get_config

    image = write_image(tmp_path / "x.png")
    model = tiny_model()
    lying = checkpoint_metadata(model)
    lying["config"] = get_config("lite").to_dict()  # says "lite", holds tiny tensors
    lying["preprocessing"] = checkpoint.default_preprocessing(get_config("lite"))
    checkpoint.save_checkpoint(tmp_path / "lies.safetensors", model.state_dict(), lying)
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04\x95")
    for weights in (tmp_path / "lies.safetensors", pickle):
        result = run_apn("scan", image, "--jsonl", "--weights", weights)
        assert result.code == 2 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_tiles_option_sets_crops_per_large_image(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "big.png", size=(200, 150))
    default = _records(run_apn("scan", image, "--jsonl", "--weights", tiny_weights).stdout)[0]
    one = _records(run_apn("scan", image, "--jsonl", "--weights", tiny_weights, "--tiles", "1").stdout)[0]
    assert default["crops"] == 4 and one["crops"] == 1
    manifest = json.loads(run_apn("scan", image, "--json", "--weights", tiny_weights, "--tiles", "2").stdout)
    assert manifest["manifest"]["model"]["max_tiles"] == 2 and manifest["records"][0]["crops"] == 2


def test_default_detector_scans_offline(run_apn, tmp_path: Path, monkeypatch) -> None:
    """A fresh install: no --weights, no network, an empty cache; the shipped detector is used."""
    monkeypatch.setenv("APN_OFFLINE", "1")
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "empty-cache"))
    image = write_image(tmp_path / "x.png", size=(160, 120))
    result = run_apn("scan", image, "--jsonl")
    record = _records(result.stdout)[0]
    assert record["error"] is None and record["model"]["name"] == "apn-v2"
    assert record["verdict"] in {"ai-generated", "real", "inconclusive"}
    assert result.code in (0, 1)
    assert not (tmp_path / "empty-cache").exists()


def test_a_stuck_decode_becomes_an_error_record(run_apn, tiny_weights: Path, tmp_path: Path,
                                                 monkeypatch) -> None:
    """A pathological file costs its own record after --decode-timeout; the files after it still score."""
    import threading

    from apncli.engine import pipeline

    release = threading.Event()
    real_decode = pipeline.decode_windows

    def slow_for_one(path, *args, **kwargs):
        if Path(path).name == "stuck.png":
            release.wait(30)
        return real_decode(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "decode_windows", slow_for_one)
    images = [write_image(tmp_path / name, seed=i) for i, name in enumerate(["a.png", "stuck.png", "z.png"])]
    try:
        result = run_apn("scan", *images, "--jsonl", "--weights", tiny_weights, "--decode-timeout", "0.5",
                         "--no-provenance")
    finally:
        release.set()
    records = {Path(r["path"]).name: r for r in _records(result.stdout)}
    assert records["stuck.png"]["error"] == "decode timed out after 0.5 s"
    assert records["a.png"]["p_ai"] is not None and records["z.png"]["p_ai"] is not None
    assert result.code in (1, 3)
