"""``apn models``: list, download (verified, from a loopback server), path, verify, offline mode, and the
shipped detectors' pins (checked on a private copy of weights/, never on the real files)."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from apn_testing import write_image

from apncli.engine import cache, registry

PAYLOAD = b"pretend-weights" * 1000


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    """Serve tmp_path/www over HTTP on 127.0.0.1; yields the base URL."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "w.bin").write_bytes(PAYLOAD)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def test_registry(tmp_path: Path, served: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry with one downloadable entry, and an empty private cache."""
    entries = {
        "demo": registry.RegistryEntry(name="demo", kind="backbone", description="demo weights",
                                       url=f"{served}/w.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                                       size=len(PAYLOAD), filename="demo.bin"),
    }
    monkeypatch.setattr(registry, "_shipped_registry", lambda: entries)
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("APN_OFFLINE", raising=False)


def test_list_download_path_verify(run_apn, test_registry, tmp_path: Path) -> None:
    listed = json.loads(run_apn("models", "list", "--json").stdout)
    assert [m["status"] for m in listed["models"]] == ["not cached"]
    assert run_apn("models", "download", "demo").code == 0
    cached = tmp_path / "cache" / "demo.bin"
    assert cached.read_bytes() == PAYLOAD
    path = run_apn("models", "path", "demo")
    assert path.code == 0 and path.stdout.strip() == str(cached)
    assert json.loads(run_apn("models", "list", "--json").stdout)["models"][0]["status"] == "cached"
    assert run_apn("models", "verify").code == 0
    cached.write_bytes(b"tampered")
    verify = run_apn("models", "verify", "--json")
    assert verify.code == 2 and "corrupt" in verify.stdout
    assert not cached.exists()


def test_offline_mode_says_what_is_missing(run_apn, test_registry, monkeypatch) -> None:
    monkeypatch.setenv("APN_OFFLINE", "1")
    result = run_apn("models", "path", "demo")
    assert result.code == 2
    assert "APN_OFFLINE" in result.stderr and "demo" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_name_is_one_line_error(run_apn, test_registry) -> None:
    result = run_apn("models", "path", "nope")
    assert result.code == 2 and "nope" in result.stderr and "Traceback" not in result.stderr


def test_shipped_registry_lists_paper_backbones(run_apn) -> None:
    names = {m["name"] for m in json.loads(run_apn("models", "list", "--json").stdout)["models"]}
    assert {"convnext_base", "resnet18", "taef2_encoder", "taef2_decoder"} <= names


DETECTORS = ("apn-lite-v1", "apn-v2")


@pytest.fixture()
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The two shipped detectors copied into a private weights/ that apn reads instead of the real one; the
    registry is cut down to them so `apn models verify` hashes nothing else."""
    real = registry.weights_dir()
    folder = tmp_path / "weights"
    folder.mkdir()
    entries = {name: registry.get_entry(name) for name in DETECTORS}
    for entry in entries.values():
        shutil.copyfile(real / str(entry.file), folder / str(entry.file))
    monkeypatch.setattr(registry, "_shipped_registry", lambda: entries)
    monkeypatch.setattr(registry, "weights_dir", lambda: folder)
    monkeypatch.setattr(cache, "weights_dir", lambda: folder)
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "cache"))
    return folder


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0xFF
    path.write_bytes(bytes(data))


def test_intact_shipped_detectors_pass_verify_and_resolve(run_apn, shipped_copy: Path) -> None:
    verify = run_apn("models", "verify", "--json")
    assert verify.code == 0 and verify.stderr == ""
    expected = [{"name": name, "status": "shipped", "problem": None} for name in DETECTORS]
    assert json.loads(verify.stdout) == expected
    path = run_apn("models", "path", "apn-lite-v1")
    assert path.code == 0 and path.stdout.strip() == str(shipped_copy / "apn-lite-v1.safetensors")


def test_a_damaged_shipped_detector_fails_verify_and_is_not_scored(run_apn, shipped_copy: Path,
                                                                   tmp_path: Path) -> None:
    flip_one_byte(shipped_copy / "apn-lite-v1.safetensors")
    pinned = registry.get_entry("apn-lite-v1").sha256[:12]
    one_line = rf"^error: \S*apn-lite-v1\.safetensors .*expected sha256 {pinned}…, got [0-9a-f]{{12}}…\)"

    verify = run_apn("models", "verify", "--json")
    assert verify.code == 2
    assert [c["status"] for c in json.loads(verify.stdout)] == ["shipped file corrupt", "shipped"]
    assert len(verify.stderr.strip().splitlines()) == 1 and re.match(one_line, verify.stderr)

    scan = run_apn("scan", write_image(tmp_path / "a.png"), "--jsonl", "-w", "apn-lite-v1")
    assert scan.code == 2 and scan.stdout == ""
    assert len(scan.stderr.strip().splitlines()) == 1 and re.match(one_line, scan.stderr)


def test_list_shows_shipped_sizes_and_reads_at_80_columns(run_apn, monkeypatch: pytest.MonkeyPatch) -> None:
    models = {m["name"]: m for m in json.loads(run_apn("models", "list", "--json").stdout)["models"]}
    for name in DETECTORS:
        assert models[name]["size"] == (registry.weights_dir() / f"{name}.safetensors").stat().st_size
    monkeypatch.setenv("COLUMNS", "80")
    lines = run_apn("models", "list").stdout.splitlines()
    assert max(map(len, lines)) <= 80
    rows = {line.split()[0]: line.split() for line in lines if line and not line.startswith(" ")}
    assert rows["apn-v2"][1:] == ["(default)", "detector", "shipped", "33.2", "MB"]
    assert rows["apn-lite-v1"][1:] == ["detector", "shipped", "9.0", "MB"]
    assert rows["efficientnet_lite0"][1] == "backbone"  # names are never folded across lines
