"""Download and cache resolution against a loopback server that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import platformdirs
import pytest

import apncli.engine.cache as cache_module
from apncli.engine.cache import cache_dir, cache_path, resolve_weights, verify_cache
from apncli.engine.download import download
from apncli.engine.registry import RegistryEntry
from apncli.errors import DownloadError, ModelNotFoundError

FAST = {"retries": 2, "timeout": 2.0, "backoff": 0.0}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(url: str, dest: Path, body: bytes, **options) -> Path:
    return download(url, dest, sha(body), len(body), **{"progress": False, **FAST, **options})


def leftovers(directory: Path) -> list[str]:
    """Files other than the lock (which stays on purpose)."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lock"))


# --- download ----------------------------------------------------------------------------------------


def test_success(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload)
    dest = fetch(url, tmp_path / "m.bin", payload)
    assert dest.read_bytes() == payload
    assert leftovers(tmp_path) == ["m.bin"]
    assert http_server.count("/m.bin") == 1


def test_progress_bar_goes_to_stderr_only_when_asked_or_on_a_tty(http_server, payload, tmp_path, capsys):
    url = http_server.add("/m.bin", payload)
    fetch(url, tmp_path / "a.bin", payload, progress=True)
    captured = capsys.readouterr()
    assert "a.bin" in captured.err and captured.out == ""
    download(url, tmp_path / "b.bin", sha(payload), len(payload), **FAST)  # captured stderr is no tty
    assert capsys.readouterr().err == ""


def test_hash_mismatch_is_retried_then_fails_and_keeps_nothing(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="wrong")
    with pytest.raises(DownloadError, match=r"sha256 mismatch: expected .*\(after 3 attempt"):
        fetch(url, tmp_path / "m.bin", payload)
    assert leftovers(tmp_path) == []
    assert http_server.count("/m.bin") == 3


def test_truncated_transfer_resumes_on_the_next_attempt(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="truncate", truncate_first=1)
    dest = fetch(url, tmp_path / "m.bin", payload)
    assert dest.read_bytes() == payload
    assert http_server.requests == [("/m.bin", None), ("/m.bin", f"bytes={len(payload) // 2}-")]


def test_always_truncated_fails_without_a_final_file(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="truncate", truncate_first=-1)
    with pytest.raises(DownloadError, match=r"transfer ended after \d+ of 102400 bytes"):
        fetch(url, tmp_path / "m.bin", payload)
    assert not (tmp_path / "m.bin").exists()
    assert http_server.count("/m.bin") == 3


def test_server_down(closed_port_url, payload, tmp_path):
    with pytest.raises(DownloadError, match="connection refused"):
        fetch(closed_port_url, tmp_path / "m.bin", payload, retries=1)
    assert leftovers(tmp_path) == []


def test_http_404_is_not_retried(http_server, payload, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(http_server.url("/missing"), tmp_path / "m.bin", payload)
    assert http_server.count("/missing") == 1


def test_http_503_is_retried(http_server, payload, tmp_path):
    url = http_server.add("/busy", mode="status", status=503)
    with pytest.raises(DownloadError, match="HTTP 503"):
        fetch(url, tmp_path / "m.bin", payload, retries=1)
    assert http_server.count("/busy") == 2


def test_stalled_server_times_out(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="stall")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"stalled: no data for 0\.3 s"):
        fetch(url, tmp_path / "m.bin", payload, retries=0, timeout=0.3)
    assert time.monotonic() - start < 3
    assert not (tmp_path / "m.bin").exists()


def test_redirect_is_followed(http_server, payload, tmp_path):
    http_server.add("/new/m.bin", payload)
    url = http_server.add("/old/m.bin", mode="redirect", target="/new/m.bin")
    assert fetch(url, tmp_path / "m.bin", payload).read_bytes() == payload
    assert [p for p, _ in http_server.requests] == ["/old/m.bin", "/new/m.bin"]


def test_resume_from_an_existing_partial(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload)
    (tmp_path / "m.bin.partial").write_bytes(payload[:30000])
    assert fetch(url, tmp_path / "m.bin", payload).read_bytes() == payload
    assert http_server.requests == [("/m.bin", "bytes=30000-")]
    assert http_server.bytes_sent == len(payload) - 30000


def test_server_ignoring_range_restarts_cleanly(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="no_range")
    (tmp_path / "m.bin.partial").write_bytes(payload[:30000])
    assert fetch(url, tmp_path / "m.bin", payload).read_bytes() == payload


def test_corrupt_partial_is_discarded_after_the_hash_check(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload)
    (tmp_path / "m.bin.partial").write_bytes(b"\0" * 30000)
    assert fetch(url, tmp_path / "m.bin", payload).read_bytes() == payload
    assert http_server.requests == [("/m.bin", "bytes=30000-"), ("/m.bin", None)]


def test_server_sending_more_than_the_registered_size_is_cut_off(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload, mode="oversize")
    with pytest.raises(DownloadError, match="more than the registered size"):
        fetch(url, tmp_path / "m.bin", payload, retries=0)
    assert leftovers(tmp_path) == []


def test_announced_length_over_the_cap_is_refused_before_reading(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload + b"extra")
    with pytest.raises(DownloadError, match="announces 102405 bytes"):
        fetch(url, tmp_path / "m.bin", payload, retries=0)
    assert leftovers(tmp_path) == []


def test_concurrent_downloads_share_one_transfer(http_server, payload, tmp_path):
    """Two threads, each with its own lock descriptor: one downloads, the other waits and reuses it."""
    url = http_server.add("/m.bin", payload, mode="slow")
    results: list[Path | BaseException] = []

    def worker() -> None:
        try:
            results.append(fetch(url, tmp_path / "m.bin", payload))
        except BaseException as exc:  # surfaced by the assert below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [tmp_path / "m.bin"] * 2
    assert (tmp_path / "m.bin").read_bytes() == payload
    assert http_server.count("/m.bin") == 1


def test_a_bad_file_already_at_dest_is_replaced(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload)
    (tmp_path / "m.bin").write_bytes(b"corrupt")
    assert fetch(url, tmp_path / "m.bin", payload).read_bytes() == payload


def test_a_good_file_already_at_dest_is_not_downloaded_again(http_server, payload, tmp_path):
    url = http_server.add("/m.bin", payload)
    (tmp_path / "m.bin").write_bytes(payload)
    fetch(url, tmp_path / "m.bin", payload)
    assert http_server.count("/m.bin") == 0


# --- cache resolution --------------------------------------------------------------------------------


def registry_for(url: str, body: bytes, filename: str = "tiny-test.bin") -> dict[str, RegistryEntry]:
    entry = RegistryEntry(name="tiny", kind="backbone", url=url, sha256=sha(body), size=len(body),
                          filename=filename)
    return {"tiny": entry}


def test_cache_dir_override_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("APN_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("APN_CACHE_DIR")
    assert cache_dir() == Path(platformdirs.user_cache_dir("apn"))


def test_resolve_downloads_once_then_hits_the_cache(http_server, payload, isolated_env):
    registry = registry_for(http_server.add("/m.bin", payload), payload)
    first = resolve_weights("tiny", registry=registry, **FAST)
    assert first == isolated_env / "tiny-test.bin" and first.read_bytes() == payload
    assert resolve_weights("tiny", registry=registry, **FAST) == first
    assert http_server.count("/m.bin") == 1


def test_explicit_path_wins(tmp_path, isolated_env):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"x")
    assert resolve_weights(str(path)) == path
    assert resolve_weights(path) == path


def test_a_folder_means_its_run_model_or_is_refused(tmp_path, isolated_env):
    """An `apn train` run folder stands for its final model.safetensors; any other folder is refused."""
    with pytest.raises(ModelNotFoundError, match=r"holds no model\.safetensors"):
        resolve_weights(str(tmp_path))
    (tmp_path / "model.safetensors").write_bytes(b"x")
    assert resolve_weights(str(tmp_path)) == tmp_path / "model.safetensors"


@pytest.mark.parametrize("text", ["missing.safetensors", "./nope", "some/dir/x.pth", ""])
def test_missing_paths_say_not_found(text, isolated_env):
    with pytest.raises(ModelNotFoundError, match="weights file not found"):
        resolve_weights(text)


def test_unknown_name(isolated_env):
    with pytest.raises(ModelNotFoundError, match="unknown weights 'nonexistent-model'"):
        resolve_weights("nonexistent-model")


def test_offline_mode_names_what_is_missing_and_where(http_server, payload, isolated_env, monkeypatch):
    url = http_server.add("/m.bin", payload)
    monkeypatch.setenv("APN_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        resolve_weights("tiny", registry=registry_for(url, payload), **FAST)
    message = str(info.value)
    assert "APN_OFFLINE=1" in message and url in message
    assert str(isolated_env / "tiny-test.bin") in message and sha(payload) in message
    assert http_server.requests == []


def test_offline_mode_still_uses_the_cache(payload, isolated_env, monkeypatch):
    monkeypatch.setenv("APN_OFFLINE", "1")
    registry = registry_for("http://127.0.0.1:9/unused", payload)
    isolated_env.mkdir()
    cache_path(registry["tiny"]).write_bytes(payload)
    assert resolve_weights("tiny", registry=registry).read_bytes() == payload


def test_corrupt_cached_file_is_removed_and_fetched_again(http_server, payload, isolated_env):
    registry = registry_for(http_server.add("/m.bin", payload), payload)
    isolated_env.mkdir()
    bad = bytearray(payload)
    bad[0] ^= 1
    cache_path(registry["tiny"]).write_bytes(bytes(bad))  # right size, wrong hash
    assert resolve_weights("tiny", registry=registry, **FAST).read_bytes() == payload
    assert http_server.count("/m.bin") == 1


def test_failed_download_leaves_no_cache_entry(http_server, payload, isolated_env):
    registry = registry_for(http_server.add("/m.bin", payload, mode="wrong"), payload)
    with pytest.raises(DownloadError):
        resolve_weights("tiny", registry=registry, **{**FAST, "retries": 0})
    assert not cache_path(registry["tiny"]).exists()
    assert not cache_path(registry["tiny"]).with_name("tiny-test.bin.partial").exists()


def test_sha_is_checked_on_first_use_then_stamped(payload, isolated_env, monkeypatch):
    import apncli.engine.cache as cache

    registry = registry_for("http://127.0.0.1:9/unused", payload)
    isolated_env.mkdir()
    cache_path(registry["tiny"]).write_bytes(payload)
    calls: list[Path] = []
    real = cache.file_digest
    monkeypatch.setattr(cache, "file_digest", lambda p: calls.append(p) or real(p))
    monkeypatch.setenv("APN_OFFLINE", "1")
    for _ in range(3):
        resolve_weights("tiny", registry=registry)
    assert len(calls) == 1
    cache_path(registry["tiny"]).write_bytes(payload)  # rewritten: mtime/inode change → hash again
    resolve_weights("tiny", registry=registry)
    assert len(calls) == 2


def test_verify_cache_rehashes_and_removes_corrupt_files(payload, isolated_env):
    registry = {
        **registry_for("http://127.0.0.1:9/a", payload, filename="a.bin"),
        "other": RegistryEntry(name="other", kind="backbone", url="http://127.0.0.1:9/b",
                               sha256=sha(b"b"), size=1, filename="b.bin"),
        "absent": RegistryEntry(name="absent", kind="backbone", url="http://127.0.0.1:9/c",
                                sha256=sha(b"c"), size=1, filename="c.bin"),
        "shipped": RegistryEntry(name="shipped", kind="detector", file="not-shipped.safetensors"),
    }
    isolated_env.mkdir()
    (isolated_env / "a.bin").write_bytes(payload)
    (isolated_env / "b.bin").write_bytes(b"X")  # right size, wrong content
    checks = verify_cache(registry)
    assert [(c.name, c.status) for c in checks] == [
        ("absent", "not cached"), ("other", "corrupt (removed)"), ("shipped", "shipped file missing"),
        ("tiny", "ok"),
    ]
    assert not (isolated_env / "b.bin").exists()
    problems = {c.name: c.problem for c in checks}
    assert problems["absent"] is None and problems["tiny"] is None
    assert "was removed" in problems["other"] and "apn models download other" in problems["other"]
    assert "missing; reinstall apn" in problems["shipped"]


@pytest.fixture
def shipped_dir(tmp_path, monkeypatch) -> Path:
    """A private stand-in for weights/: the shipped files these tests damage are never the real ones."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(cache_module, "weights_dir", lambda: folder)
    return folder


def corrupt(path: Path) -> None:
    """Flip one byte in place (same size), and move mtime on as any real edit would."""
    data = bytearray(path.read_bytes())
    data[-1000] ^= 0xFF
    before = path.stat().st_mtime_ns
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_a_damaged_shipped_file_is_refused_and_reported(payload, isolated_env, shipped_dir):
    (shipped_dir / "det.safetensors").write_bytes(payload)
    registry = {"det": RegistryEntry(name="det", kind="detector", file="det.safetensors", sha256=sha(payload),
                                     size=len(payload))}
    assert resolve_weights("det", registry=registry) == shipped_dir / "det.safetensors"
    assert verify_cache(registry) == [("det", "shipped", None)]
    corrupt(shipped_dir / "det.safetensors")
    expected = rf"det\.safetensors .*'det' \(expected sha256 {sha(payload)[:12]}…, got [0-9a-f]{{12}}…\)"
    with pytest.raises(ModelNotFoundError, match=expected + ": the file is damaged or was replaced"):
        resolve_weights("det", registry=registry)
    [check] = verify_cache(registry)
    assert check.status == "shipped file corrupt" and re.search(expected, check.problem)
    assert (shipped_dir / "det.safetensors").exists()  # reported, never deleted: it is part of the install


def test_shipped_registry_entries_resolve_offline_to_a_clear_error(isolated_env, monkeypatch):
    monkeypatch.setenv("APN_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"resnet18-f37072fd\.pth"):
        resolve_weights("resnet18")


def test_two_processes_downloading_the_same_file_share_one_transfer(http_server, payload, tmp_path):
    """Separate processes (as two `apn` runs would be): the file lock makes one wait for the other."""
    url = http_server.add("/p.bin", payload, mode="slow")
    dest = tmp_path / "p.bin"
    script = ("import sys; from apncli.engine.download import download; "
              "download(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), progress=False, "
              "retries=1, timeout=10, backoff=0.01)")
    args = [sys.executable, "-c", script, url, str(dest), sha(payload), str(len(payload))]
    procs = [subprocess.Popen(args, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    assert dest.read_bytes() == payload
    assert http_server.count("/p.bin") == 1
    assert leftovers(tmp_path) == ["p.bin"]


def test_loading_the_default_detector_by_name_hashes_its_file_once(monkeypatch):
    """Resolving a registered name checks the file against its pin; the detector then reports that pin as
    its sha256 instead of reading the whole file a second time (~50 ms of every start-up)."""
    import apncli.engine.checkpoint as checkpoint_module
    from apncli.engine import Detector
    from apncli.engine.registry import default_name, get_entry

    hashed, real = [], cache_module.file_digest

    def counting(path):
        hashed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(cache_module, "file_digest", counting)
    monkeypatch.setattr(checkpoint_module, "file_digest", counting)
    name = default_name()
    detector = Detector.load(name, device="cpu")
    assert hashed == [get_entry(name).file]
    assert detector.info.sha256 == get_entry(name).sha256
