"""C2PA: images signed in the test with the library's own Builder/Signer and a test CA made in the test."""

from __future__ import annotations

import multiprocessing
import sys

import pytest

from apncli.provenance import read_provenance
from apncli.provenance.reader import NOTE_C2PA_INVALID, NOTE_C2PA_UNTRUSTED

AI_CREATED = {"action": "c2pa.created",
              "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"}


def test_signed_jpeg_declares_ai_and_reports_library_validation(c2pa_sign):
    prov = read_provenance(c2pa_sign("gen.jpg", [AI_CREATED], generator="Adobe Firefly"))
    c2pa = prov.c2pa
    assert (c2pa.checked, c2pa.present, c2pa.valid, c2pa.trusted) == (True, True, True, False)
    assert c2pa.validation_state == "Valid"
    # As the library reports it: a self-made CA is not on any trust list.
    assert "signingCredential.untrusted" in [s["code"] for s in c2pa.validation_status]
    assert c2pa.claim_generator == "Adobe Firefly/1.0"
    assert c2pa.digital_source_type == AI_CREATED["digitalSourceType"]
    assert c2pa.actions[0]["action"] == "c2pa.created"
    assert c2pa.signer["common_name"] == "apn test signer"
    assert c2pa.manifests == 1 and c2pa.error is None
    declared = {(i.field, i.indicates) for i in prov.items if i.source == "c2pa"}
    assert ("digitalSourceType", "declared-ai") in declared
    assert ("claim_generator", "declared-ai") in declared
    assert prov.summary == "declared-ai"
    assert NOTE_C2PA_UNTRUSTED in prov.notes


def test_trust_anchor_makes_signer_trusted(c2pa_sign, test_chain):
    path = c2pa_sign("gen.png", [AI_CREATED])
    prov = read_provenance(path, c2pa_trust_anchors=test_chain[2].decode())
    assert prov.c2pa.validation_state == "Trusted"
    assert prov.c2pa.valid is True and prov.c2pa.trusted is True
    assert NOTE_C2PA_UNTRUSTED not in prov.notes


def test_tampered_signed_image_is_invalid_but_declaration_still_shown(c2pa_sign):
    path = c2pa_sign("gen.jpg", [AI_CREATED])
    data = bytearray(path.read_bytes())
    data[-50] ^= 0xFF  # inside the entropy-coded pixel data, which the manifest's hash covers
    path.write_bytes(bytes(data))
    prov = read_provenance(path)
    assert prov.c2pa.present is True and prov.c2pa.valid is False
    assert prov.c2pa.validation_state == "Invalid"
    assert any(s["code"] == "assertion.dataHash.mismatch" for s in prov.c2pa.validation_status)
    assert prov.summary == "declared-ai"
    assert NOTE_C2PA_INVALID in prov.notes


def test_edit_action_without_ai_source_is_declared_edited(c2pa_sign):
    capture = {"action": "c2pa.created",
               "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"}
    edit = {"action": "c2pa.color_adjustments", "softwareAgent": {"name": "Adobe Lightroom"}}
    prov = read_provenance(c2pa_sign("photo.jpg", [capture, edit], generator="Some Camera App"))
    assert prov.summary == "declared-edited"
    assert prov.c2pa.digital_source_type.endswith("digitalCapture")
    assert {(i.field, i.value, i.indicates) for i in prov.items if i.indicates} == {
        ("digitalSourceType", capture["digitalSourceType"], "camera-metadata"),
        ("action", "c2pa.color_adjustments", "declared-edited"),
        ("softwareAgent", "Adobe Lightroom", "declared-edited"),
    }


def test_unsigned_image_is_checked_and_absent(write_jpeg):
    pytest.importorskip("c2pa", exc_type=ImportError)
    status = read_provenance(write_jpeg()).c2pa
    assert (status.checked, status.present, status.valid, status.error) == (True, False, None, None)


def test_c2pa_not_installed_says_not_checked(write_jpeg, monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # makes `import c2pa` raise ImportError
    prov = read_provenance(write_jpeg())
    assert prov.c2pa.checked is False and prov.c2pa.present is None
    assert "not installed" in prov.c2pa.error
    assert any(note.startswith("C2PA was not checked") for note in prov.notes)
    assert prov.to_dict()["c2pa"]["checked"] is False


def test_bad_trust_anchors_do_not_raise(write_jpeg):
    pytest.importorskip("c2pa", exc_type=ImportError)
    status = read_provenance(write_jpeg(), c2pa_trust_anchors="not a certificate").c2pa
    assert status.checked is False and "could not be set up" in status.error


def _state_in_child(path: str) -> tuple[str | None, str | None]:
    status = read_provenance(path).c2pa
    return status.validation_state, status.error


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_forked_worker_reads_after_parent_did(c2pa_sign):
    """The library invalidates native handles in a forked child; the reader must not reuse the parent's."""
    path = str(c2pa_sign("gen.jpg", [AI_CREATED]))
    assert read_provenance(path).c2pa.validation_state == "Valid"
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_state_in_child, (path,)) == ("Valid", None)
