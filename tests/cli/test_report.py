"""``apn report`` and ``apn scan --html``: one offline page, every path and metadata string escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from apn_testing import MARKUP_EXIF, markup_folder


def page_data(page: str) -> dict:
    """The records block as the page's script reads it."""
    match = re.search(r'<script type="application/json" id="apn-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match[1])


def test_report_embeds_every_record_and_escapes_markup(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    folder = markup_folder(tmp_path / "photos")
    scan_out = tmp_path / "scan.jsonl"
    run_apn("scan", folder, "--weights", tiny_weights, "--out", scan_out)
    page = tmp_path / "report.html"
    result = run_apn("report", scan_out, "--out", page)
    assert result.code == 0, result.stderr
    text = page.read_text(encoding="utf-8")
    # Only the page's own two script blocks; the hostile strings never appear as markup.
    assert len(re.findall(r"<script", text, re.I)) == 2
    assert "<img src=x" not in text and "window.pwned=1</script>" not in text
    data = page_data(text)
    records = [json.loads(line) for line in scan_out.read_text().splitlines()]
    assert data["records"] == sorted(records, key=lambda record: record["path"])
    assert any(MARKUP_EXIF in json.dumps(r["provenance"]) for r in data["records"])
    thumbs = [image["thumb"] for image in data["images"]]
    assert sum(thumb is not None and thumb.startswith("data:image/jpeg;base64,") for thumb in thumbs) == 3
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert "evidence, not proof" in text


def test_scan_html_shortcut_and_image_modes(run_apn, tiny_weights: Path, tmp_path: Path) -> None:
    folder = markup_folder(tmp_path / "photos")
    page = tmp_path / "scan.html"
    result = run_apn("scan", folder, "--weights", tiny_weights, "--jsonl", "--html", page)
    assert len(result.stdout.splitlines()) == 4  # the normal output is still there
    data = page_data(page.read_text(encoding="utf-8"))
    assert len(data["records"]) == 4
    assert run_apn("scan", folder, "--weights", tiny_weights, "--html", page).code == 2  # no clobbering
    resumed = run_apn("scan", folder, "--weights", tiny_weights, "--out", tmp_path / "o.jsonl", "--resume",
                      "--html", tmp_path / "new.html")
    assert resumed.code == 2 and "apn report" in resumed.stderr
    scan_out = tmp_path / "scan.json"
    run_apn("scan", folder, "--weights", tiny_weights, "--out", scan_out)
    linked = tmp_path / "linked.html"
    assert run_apn("report", scan_out, "--out", linked, "--images", "link").code == 0
    thumbs = {image["thumb"] for image in page_data(linked.read_text(encoding="utf-8"))["images"]}
    assert "photos/plain.png" in thumbs
    assert "photos/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E%3Cscript%3Ealert%282%29.png" in thumbs
    bare = tmp_path / "bare.html"
    assert run_apn("report", scan_out, "--out", bare, "--images", "none").code == 0
    assert "data:image" not in bare.read_text(encoding="utf-8")


@pytest.mark.parametrize("content", [b"hello\n", b'{"no": "path"}\n', b'{"path": "\xff"}\n'])
def test_report_refuses_what_is_not_scan_output(run_apn, tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "input.jsonl"
    source.write_bytes(content)
    result = run_apn("report", source, "--out", tmp_path / "r.html")
    assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("verb", ["report", "merge"])
def test_report_and_merge_outputs_follow_the_scan_out_rules(run_apn, tiny_weights: Path, tmp_path: Path,
                                                            verb: str) -> None:
    """One behaviour for every output path: missing folders are made, a folder is refused in one line,
    an existing file needs --force, and an input is never overwritten."""
    scan_out = tmp_path / "scan.jsonl"
    run_apn("scan", markup_folder(tmp_path / "photos"), "--weights", tiny_weights, "--out", scan_out)
    nested = tmp_path / "new" / "deeper" / "out.html"
    assert run_apn(verb, scan_out, "--out", nested).code == 0 and nested.stat().st_size > 0
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = run_apn(verb, scan_out, "--out", folder)
    assert result.code == 2 and "is a folder; give a file name" in result.stderr
    again = run_apn(verb, scan_out, "--out", nested)
    assert again.code == 2 and "--force" in again.stderr
    assert run_apn(verb, scan_out, "--out", nested, "--force").code == 0
    before = scan_out.read_bytes()
    clobber = run_apn(verb, scan_out, "--out", scan_out, "--force")
    assert clobber.code == 2 and "input" in clobber.stderr and scan_out.read_bytes() == before

