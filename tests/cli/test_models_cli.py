"""``apn models``: list, download (verified, from a loopback server), path, verify, offline mode."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from apncli.engine import registry

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
