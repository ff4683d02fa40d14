"""C2PA Content Credentials read and validated by the official ``c2pa-python`` package (extra ``apn[c2pa]``).

The library's verdict is passed through unchanged (``validation_state``, ``validation_status``); apn only
derives the two booleans a reader needs first (signature intact? signer trusted?). Reading is offline:
remote manifests and OCSP are never fetched, so scanning a folder never contacts a URL a file names.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from apncli.provenance.classify import (
    classify_action,
    classify_software,
    classify_source_type,
    rank,
)
from apncli.provenance.model import C2PAStatus, ProvenanceItem

MAX_ACTIONS = 50
_OFFLINE_SETTINGS: dict[str, Any] = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_VALID_STATES = {"Valid": True, "Trusted": True, "Invalid": False}


def load_c2pa() -> ModuleType | str:
    """The ``c2pa`` module, or the reason it cannot be used (not installed, native library missing)."""
    try:
        return importlib.import_module("c2pa")
    except ImportError:
        return "the c2pa-python package is not installed (pip install 'apn[c2pa]')"
    except Exception as exc:  # installed, but its native library fails to load (RuntimeError, OSError...)
        return f"the c2pa-python package could not be loaded: {type(exc).__name__}: {exc}"


@functools.lru_cache(maxsize=4)
def _context(module: ModuleType, trust_anchors: str | None, pid: int) -> Any:
    """One reusable offline reading context per trust-anchor set and process.

    Keyed by ``pid`` because the library invalidates native handles in a forked child ("Context is not
    valid"), and scan workers may be forked after the parent has read a file.
    """
    settings = dict(_OFFLINE_SETTINGS)
    if trust_anchors:
        settings["trust"] = {"trust_anchors": trust_anchors}
    return module.Context.from_dict(settings)


def read_c2pa(path: Path, trust_anchors: str | None = None) -> tuple[C2PAStatus, list[ProvenanceItem]]:
    """C2PA status and evidence items of one file; every failure is reported, none raised."""
    module = load_c2pa()
    if isinstance(module, str):
        return C2PAStatus(checked=False, error=module), []
    try:
        context = _context(module, trust_anchors, os.getpid())
    except Exception as exc:  # e.g. trust anchors that are not PEM certificates
        return C2PAStatus(checked=False, error=f"C2PA reader could not be set up: {exc}"), []
    try:
        store = _read_store(module, path, context)
        if store is None:
            return C2PAStatus(checked=True, present=False), []
        return _status(store), _items(store)
    except Exception as exc:  # the library's errors, I/O errors, an incompatible library version
        return _failure(module, exc), []


def _failure(module: ModuleType, exc: Exception) -> C2PAStatus:
    """Status for a file the library could not read: unsupported format = not checked; else an error."""
    errors = getattr(module, "C2paError", ())
    if isinstance(exc, getattr(errors, "NotSupported", ())):
        return C2PAStatus(checked=False, error="file format not supported by the C2PA library")
    if isinstance(exc, errors):
        return C2PAStatus(checked=True, error=f"C2PA data could not be read: {exc}")
    return C2PAStatus(checked=False, error=f"C2PA check failed: {type(exc).__name__}: {exc}")


def _read_store(module: ModuleType, path: Path, context: Any) -> dict[str, Any] | None:
    """The manifest store as the library's JSON, or None when the file carries no manifest."""
    with open(path, "rb") as stream:
        reader = module.Reader.try_create(None, stream, None, context)
        if reader is None:
            return None
        with reader:
            return json.loads(reader.json())


def _status(store: dict[str, Any]) -> C2PAStatus:
    """Status of a manifest store; booleans derived only from the library's own ``validation_state``."""
    manifests = store.get("manifests") or {}
    active = manifests.get(store.get("active_manifest"), {})
    state = store.get("validation_state")
    actions = _actions(active)
    return C2PAStatus(
        checked=True,
        present=True,
        valid=_VALID_STATES.get(state),
        trusted=(state == "Trusted") if state in _VALID_STATES else None,
        validation_state=state,
        validation_status=list(store.get("validation_status") or []),
        claim_generator=claim_generator(active),
        signer=active.get("signature_info"),
        actions=actions[:MAX_ACTIONS],
        digital_source_type=_headline_source_type(active, manifests),
        manifests=len(manifests),
    )


def claim_generator(manifest: dict[str, Any]) -> str | None:
    """``claim_generator`` (C2PA 1.x) or the ``name/version`` entries of ``claim_generator_info`` (2.x)."""
    if manifest.get("claim_generator"):
        return str(manifest["claim_generator"])
    infos = manifest.get("claim_generator_info") or []
    names = [f"{i['name']}/{i['version']}" if i.get("version") else str(i["name"])
             for i in infos if isinstance(i, dict) and i.get("name")]
    return "; ".join(names) or None


def _actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Actions of every ``c2pa.actions``/``c2pa.actions.v2`` assertion of a manifest, as the library gives."""
    actions: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        if isinstance(assertion, dict) and str(assertion.get("label", "")).startswith("c2pa.actions"):
            data = assertion.get("data") or {}
            actions.extend(a for a in data.get("actions") or [] if isinstance(a, dict))
    return actions


def _source_types(manifest: dict[str, Any]) -> list[str]:
    return [str(a["digitalSourceType"]) for a in _actions(manifest) if a.get("digitalSourceType")]


def _headline_source_type(active: dict[str, Any], manifests: dict[str, Any]) -> str | None:
    """Strongest digital source type, the active manifest's first, then its ingredients' manifests."""
    for group in (_source_types(active), [t for m in manifests.values() for t in _source_types(m)]):
        if group:
            return max(group, key=lambda t: rank(classify_source_type(t)))
    return None


def _items(store: dict[str, Any]) -> list[ProvenanceItem]:
    """Evidence items of every manifest in the store (ingredients can carry the AI declaration)."""
    items: list[ProvenanceItem] = []
    for label, manifest in (store.get("manifests") or {}).items():
        if isinstance(manifest, dict):
            items.extend(_manifest_items(str(label), manifest))
    return list(dict.fromkeys(items))


def _manifest_items(label: str, manifest: dict[str, Any]) -> list[ProvenanceItem]:
    """Claim generator, signer and per-action evidence of one manifest."""
    items = []
    generator = claim_generator(manifest)
    if generator:
        items.append(ProvenanceItem.text("c2pa", "claim_generator", generator, classify_software(generator),
                                         manifest=label))
    signer = manifest.get("signature_info") or {}
    if signer.get("issuer") or signer.get("common_name"):
        who = f"{signer.get('common_name') or '?'} (issuer: {signer.get('issuer') or '?'})"
        items.append(ProvenanceItem.text("c2pa", "signer", who, manifest=label))
    for action in _actions(manifest)[:MAX_ACTIONS]:
        items.extend(_action_items(label, action))
    return items


def _action_items(label: str, action: dict[str, Any]) -> list[ProvenanceItem]:
    """An action, its digital source type and its software agent, each as its own item."""
    name = str(action.get("action", ""))
    items = [ProvenanceItem.text("c2pa", "action", name, classify_action(name), manifest=label)]
    source_type = action.get("digitalSourceType")
    if source_type:
        items.append(ProvenanceItem.text("c2pa", "digitalSourceType", str(source_type),
                                         classify_source_type(str(source_type)), manifest=label))
    agent = action.get("softwareAgent")
    agent_name = str(agent.get("name", "")) if isinstance(agent, dict) else str(agent or "")
    if agent_name:
        items.append(ProvenanceItem.text("c2pa", "softwareAgent", agent_name, classify_software(agent_name),
                                         manifest=label))
    return items
