"""Readers for the folder layouts of public AI-image datasets (nothing is downloaded).

Each reader turns a folder (or a manifest file) into a sorted list of :class:`Sample` ``(path, label,
generator)``; label 1 = AI-generated, 0 = real. Two questions are answered per dataset:

- *what to train on* (:func:`training_samples`, selected by ``--train-on``), and
- *what to evaluate* (:func:`evaluation_groups`): one :class:`EvalGroup` of reals + fakes per generator.

Supported layouts
-----------------
``genimage``            ``ROOT/<generator folder>/[<any one folder>/]{train,val}/{ai,nature}/``; generator
                        folders are matched to friendly keys (sdv14, sdv15, midjourney, adm, glide, wukong,
                        vqdm, biggan; other folders keep their name as on disk). Training: the chosen
                        generator's ``train`` split. Evaluation: every generator's ``val`` split against its
                        own ``nature`` images.
``diffusionforensics``  ``ROOT/{train,test}/<domain>/<generator or real>/...``; generator keys are
                        ``domain/generator`` (e.g. ``lsun_bedroom/adm``). Each generator is evaluated
                        against the reals of its own domain.
``forensynths``         ``ROOT/<split>/<group>/[<class>/]{0_real,1_fake}/`` or flat ``ROOT/<split>/{0_real,
                        1_fake}`` (CNNDetection). Training: the ``train`` split (all classes). Evaluation:
                        ``test`` (else ``val``), one group per first-level folder.
``folder``              ``ROOT/{real,0_real}/...`` and ``ROOT/{fake,1_fake}/[<generator>/]...``.
``manifest``            a CSV (``path,label[,generator]``, header optional) or JSONL file
                        (``{"path"|"img_path", "label", "generator"}``); relative paths are relative to the
                        manifest's folder.

When reals are shared by several generators (``folder``, ``manifest``, and per domain in
``diffusionforensics``) every generator is evaluated against *all* the shared reals, so per-generator
real accuracy is the same number in each row and the cross-generator mean weights each generator equally.

Generator names are the folder (or manifest) names as written; choosing them (``--train-on``,
``--generators``) ignores case.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from apncli.data.images import IMAGE_EXTENSIONS
from apncli.errors import UsageError

__all__ = [
    "DATASETS",
    "GENIMAGE_ALIASES",
    "LAYOUTS_HELP",
    "EvalGroup",
    "Sample",
    "default_train_on",
    "evaluation_groups",
    "genimage_key",
    "list_layout",
    "training_samples",
]

DATASETS = ("genimage", "diffusionforensics", "forensynths", "folder", "manifest")

#: Friendly key → normalised folder names (lower case, alphanumerics only) that mean that generator.
GENIMAGE_ALIASES: dict[str, tuple[str, ...]] = {
    "sdv14": ("sdv14", "sd14", "stablediffusionv14", "stablediffusion14", "sdv4"),
    "sdv15": ("sdv15", "sd15", "stablediffusionv15", "stablediffusion15", "sdv5"),
    "midjourney": ("midjourney", "mj", "midjourneyv5"),
    "adm": ("adm",),
    "glide": ("glide",),
    "wukong": ("wukong",),
    "vqdm": ("vqdm",),
    "biggan": ("biggan",),
}

#: The layouts in one paragraph, for ``apn train --help`` and ``apn eval --help``.
LAYOUTS_HELP = (
    "Layouts (--dataset): genimage (ROOT/<generator>/.../{train,val}/{ai,nature}), "
    "diffusionforensics (ROOT/{train,test}/<domain>/<generator|real>), forensynths "
    "(ROOT/<split>/[<class>/]{0_real,1_fake}), folder (ROOT/{real,fake/<generator>} or "
    "{0_real,1_fake}; loose files in fake/ form the generator 'fake') and manifest (--data-root "
    "FILE.csv|.jsonl with path,label[,generator]). Generators are named as their folders are; "
    "selecting them ignores case."
)

_REAL_NAMES = ("real", "0_real", "nature")
_FAKE_NAMES = ("fake", "1_fake", "ai")


@dataclass(frozen=True, order=True)
class Sample:
    """One labelled file. ``generator`` is the fake's source, or for a real the set it belongs to."""

    path: Path
    label: int
    generator: str


@dataclass
class EvalGroup:
    """The reals and fakes one generator is scored on."""

    name: str
    reals: list[Sample] = field(default_factory=list)
    fakes: list[Sample] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- file walking


def _image_files(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursive, sorted, symlinked folders followed once)."""
    found: list[Path] = []
    seen: set[str] = set()

    def walk(d: Path) -> None:
        real = os.path.realpath(d)
        if real in seen:
            return  # a symlink loop or a folder linked twice
        seen.add(real)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            return  # unreadable folder: its files cannot be training data; discovery reports such cases
        for entry in entries:
            try:
                if entry.is_dir():
                    walk(Path(entry.path))
                elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
                    found.append(Path(entry.path))
            except OSError:
                continue

    walk(folder)
    return found


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _child(folder: Path, names: Iterable[str]) -> Path | None:
    """The first existing child folder whose name (case-insensitive) is in ``names``."""
    wanted = [n.lower() for n in names]
    by_name = {p.name.lower(): p for p in _subdirs(folder)}
    return next((by_name[n] for n in wanted if n in by_name), None)


def _samples(folder: Path | None, label: int, generator: str) -> list[Sample]:
    return [] if folder is None else [Sample(p, label, generator) for p in _image_files(folder)]


def _require_dir(root: Path, dataset: str) -> Path:
    if not root.is_dir():
        raise UsageError(f"--data-root {root} is not a folder (dataset {dataset})")
    return root


# -------------------------------------------------------------------------------------------- GenImage


def genimage_key(folder_name: str) -> str:
    """Friendly key of a GenImage folder (``stable_diffusion_v_1_4``/``imagenet_ai_0419_sdv4``: sdv14)."""
    norm = re.sub(r"[^a-z0-9]", "", folder_name.lower())
    last = re.split(r"[^a-z0-9]+", folder_name.lower().strip("_- "))[-1]
    for key, names in GENIMAGE_ALIASES.items():
        if norm in names or last in names:
            return key
    return folder_name


def _has_split(folder: Path, split: str) -> Path | None:
    d = _child(folder, [split])
    return d if d is not None and (_child(d, ["ai"]) or _child(d, ["nature"])) else None


def _genimage_split_dir(gen_dir: Path, split: str) -> Path | None:
    """``gen/split`` or ``gen/<one folder>/split`` (the intermediate name varies per generator)."""
    direct = _has_split(gen_dir, split)
    if direct is not None:
        return direct
    return next((d for sub in _subdirs(gen_dir) if (d := _has_split(sub, split)) is not None), None)


def _genimage_generators(root: Path) -> dict[str, Path]:
    """key → generator folder; a root that is itself one generator folder is accepted too."""
    if any(_has_split(root, s) for s in ("train", "val")):
        return {genimage_key(root.name): root}
    gens: dict[str, Path] = {}
    for d in _subdirs(root):
        if any(_genimage_split_dir(d, s) for s in ("train", "val")):
            gens.setdefault(genimage_key(d.name), d)
    return gens


def _genimage_split(gen_dir: Path, key: str, split: str) -> EvalGroup:
    split_dir = _genimage_split_dir(gen_dir, split)
    group = EvalGroup(key)
    if split_dir is not None:
        group.reals = _samples(_child(split_dir, ["nature"]), 0, key)
        group.fakes = _samples(_child(split_dir, ["ai"]), 1, key)
    return group


# ------------------------------------------------------------------------------------ DiffusionForensics


def _df_groups(root: Path, split: str) -> dict[str, EvalGroup]:
    split_dir = _child(root, [split])
    if split_dir is None:
        return {}
    groups: dict[str, EvalGroup] = {}
    for domain in _subdirs(split_dir):
        real_dir = _child(domain, _REAL_NAMES)
        reals = _samples(real_dir, 0, f"{domain.name}/real")
        for gen in _subdirs(domain):
            if gen == real_dir:
                continue
            key = f"{domain.name}/{gen.name}"
            groups[key] = EvalGroup(key, reals, _samples(gen, 1, key))
    return groups


# ------------------------------------------------------------------------------------------ ForenSynths


def _label_dirs(folder: Path) -> tuple[Path | None, Path | None]:
    return _child(folder, ["0_real"]), _child(folder, ["1_fake"])


def _fs_collect(folder: Path, key: str, depth: int = 0) -> EvalGroup:
    """All ``0_real``/``1_fake`` folders under ``folder`` (up to 2 levels of class folders) as one group."""
    group = EvalGroup(key)
    real, fake = _label_dirs(folder)
    if real or fake:
        group.reals, group.fakes = _samples(real, 0, key), _samples(fake, 1, key)
        return group
    if depth < 2:
        for sub in _subdirs(folder):
            part = _fs_collect(sub, key, depth + 1)
            group.reals += part.reals
            group.fakes += part.fakes
    return group


def _fs_groups(root: Path, split: str) -> dict[str, EvalGroup]:
    split_dir = _child(root, [split])
    if split_dir is None:
        return {}
    real, fake = _label_dirs(split_dir)
    if real or fake:  # flat: <split>/{0_real,1_fake}
        return {split: _fs_collect(split_dir, split)}
    groups = {d.name: _fs_collect(d, d.name) for d in _subdirs(split_dir)}
    return {k: g for k, g in groups.items() if g.reals or g.fakes}


# ------------------------------------------------------------------------------------ folder / manifest


def _folder_layout(root: Path) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """Shared reals and fakes by generator for ``real/`` + ``fake/<generator>/`` (or 0_real/1_fake)."""
    real_dir, fake_dir = _child(root, _REAL_NAMES[:2]), _child(root, _FAKE_NAMES[:2])
    if real_dir is None and fake_dir is None:
        raise UsageError(f"{root}: expected real/ and fake/ (or 0_real/ and 1_fake/) folders")
    reals = _samples(real_dir, 0, "real")
    fakes: dict[str, list[Sample]] = {}
    if fake_dir is not None:
        loose = [p for p in _image_files(fake_dir) if p.parent == fake_dir]
        if loose:
            fakes["fake"] = [Sample(p, 1, "fake") for p in loose]
        for gen in _subdirs(fake_dir):
            files = _samples(gen, 1, gen.name)
            if files:
                fakes.setdefault(gen.name, []).extend(files)
    return reals, fakes


_LABELS = {
    "0": 0,
    "real": 0,
    "nature": 0,
    "false": 0,
    "authentic": 0,
    "1": 1,
    "fake": 1,
    "ai": 1,
    "ai-generated": 1,
    "generated": 1,
    "true": 1,
    "synthetic": 1,
}


def _parse_label(value: object, where: str) -> int:
    text = str(value).strip().lower()
    if text not in _LABELS:
        raise UsageError(f"{where}: label {value!r} is not 0/1 or real/fake")
    return _LABELS[text]


def _manifest_rows(path: Path) -> Iterator[tuple[str, object, str | None, str]]:
    """(path, label, generator, where) per row of a CSV or JSONL manifest."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise UsageError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), "")
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson") or first.lstrip().startswith("{"):
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise UsageError(f"{path}:{n}: not a JSON object") from None
            file = obj.get("path", obj.get("img_path", obj.get("file"))) if isinstance(obj, dict) else None
            if file is None or "label" not in obj:
                raise UsageError(f"{path}:{n}: needs 'path' (or 'img_path') and 'label'")
            yield str(file), obj["label"], obj.get("generator"), f"{path}:{n}"
        return
    rows = list(csv.reader(lines))
    start = 1 if rows and rows[0] and rows[0][0].strip().lower() in ("path", "file", "img_path") else 0
    for n, row in enumerate(rows[start:], start + 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise UsageError(f"{path}:{n}: expected path,label[,generator]")
        yield row[0].strip(), row[1], (row[2].strip() or None) if len(row) > 2 else None, f"{path}:{n}"


def _manifest_layout(path: Path) -> tuple[list[Sample], dict[str, list[Sample]]]:
    if not path.is_file():
        raise UsageError(f"manifest {path} is not a file (use --data-root FILE.csv|FILE.jsonl)")
    reals: list[Sample] = []
    fakes: dict[str, list[Sample]] = {}
    for file, raw_label, generator, where in _manifest_rows(path):
        label = _parse_label(raw_label, where)
        p = Path(file) if os.path.isabs(file) else path.parent / file
        if label == 0:
            reals.append(Sample(p, 0, str(generator or "real")))
        else:
            gen = str(generator or "fake")
            fakes.setdefault(gen, []).append(Sample(p, 1, gen))
    return reals, fakes


# ------------------------------------------------------------------------------------------ public API


def default_train_on(dataset: str) -> str:
    """What ``--train-on`` means when not given: GenImage SD v1.4, DIRE's LSUN-Bedroom ADM, else all."""
    return {"genimage": "sdv14", "diffusionforensics": "lsun_bedroom/adm"}.get(dataset, "all")


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise UsageError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def list_layout(dataset: str, root: Path, split: str) -> dict[str, EvalGroup]:
    """Every generator group of one split (``train``/``val``/``test``; ignored by folder/manifest)."""
    _check_dataset(dataset)
    root = Path(root)
    if dataset == "manifest":
        reals, fakes = _manifest_layout(root)
        return {g: EvalGroup(g, reals, f) for g, f in fakes.items()} or {"real": EvalGroup("real", reals)}
    _require_dir(root, dataset)
    if dataset == "genimage":
        gens = _genimage_generators(root)
        groups = {k: _genimage_split(d, k, split) for k, d in gens.items()}
        return {k: g for k, g in groups.items() if g.reals or g.fakes}
    if dataset == "diffusionforensics":
        return _df_groups(root, split)
    if dataset == "forensynths":
        return _fs_groups(root, split)
    reals, fakes = _folder_layout(root)
    return {g: EvalGroup(g, reals, f) for g, f in fakes.items()} or {"real": EvalGroup("real", reals)}


def _select(groups: dict[str, EvalGroup], wanted: str, dataset: str, flag: str) -> list[EvalGroup]:
    """Groups named by ``wanted`` (comma list, ``all``, GenImage aliases, or a DF domain/generator), matched
    case-insensitively; an unknown name is a usage error that names ``flag``, the option it came from."""
    if wanted.strip().lower() == "all":
        return list(groups.values())
    chosen: list[EvalGroup] = []
    for raw in wanted.split(","):
        want = raw.strip().lower()
        key = genimage_key(want) if dataset == "genimage" else want
        matches = [g for k, g in groups.items() if k.lower() == key]
        if not matches and dataset == "diffusionforensics":  # a domain, or a generator unique across domains
            parts = {k: k.lower().split("/") for k in groups}
            matches = [groups[k] for k, p in parts.items() if want in (p[0], p[-1])]
        if not matches:
            raise UsageError(
                f"{flag} {raw.strip()!r} not found; available: {', '.join(sorted(groups)) or 'none'}"
            )
        chosen += [g for g in matches if g not in chosen]
    return chosen


def training_samples(dataset: str, root: Path, train_on: str | None = None) -> list[Sample]:
    """The labelled files ``apn train`` learns from (sorted; reals shared by groups appear once)."""
    train_on = train_on or default_train_on(dataset)
    split = "train"
    groups = list_layout(dataset, root, split)
    if not groups:
        raise UsageError(
            f"no '{split}' data found for dataset {dataset} under {root} (see `apn train --help`)"
        )
    unique: dict[Path, Sample] = {}
    for g in _select(groups, train_on, dataset, "--train-on"):
        for s in (*g.reals, *g.fakes):
            unique.setdefault(s.path, s)
    samples = sorted(unique.values())
    labels = {s.label for s in samples}
    if labels != {0, 1}:
        missing = "real" if 0 not in labels else "AI-generated"
        raise UsageError(f"training data for {train_on!r} in {root} has no {missing} images")
    return samples


def evaluation_groups(
    dataset: str, root: Path, generators: Iterable[str] | None = None
) -> dict[str, EvalGroup]:
    """Per-generator evaluation sets: GenImage ``val``, DiffusionForensics/ForenSynths ``test``."""
    split = {"genimage": "val"}.get(dataset, "test")
    groups = list_layout(dataset, root, split)
    if not groups and dataset == "forensynths":
        groups = list_layout(dataset, root, "val")
    if generators:
        groups = {g.name: g for g in _select(groups, ",".join(generators), dataset, "--generators")}
    groups = {k: g for k, g in groups.items() if g.fakes}
    if not groups:
        raise UsageError(
            f"no evaluation data ('{split}' split with AI-generated images) for {dataset} under {root}"
        )
    return dict(sorted(groups.items()))
