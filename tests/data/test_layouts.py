"""Each dataset layout yields the right (path, label, generator) lists for training and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from apncli.data.layouts import (
    evaluation_groups,
    genimage_key,
    list_layout,
    training_samples,
)
from apncli.errors import UsageError


def _img(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    return path


def _imgs(folder: Path, n: int, ext: str = ".png") -> list[Path]:
    return [_img(folder / f"{i}{ext}") for i in range(n)]


def _triples(samples) -> set[tuple[str, int, str]]:
    return {(str(s.path), s.label, s.generator) for s in samples}


@pytest.fixture
def genimage(tmp_path: Path) -> Path:
    root = tmp_path / "GenImage"
    for folder, inner in (
        ("stable_diffusion_v_1_4", "imagenet_ai_0419_sdv4"),
        ("Midjourney", "imagenet_midjourney"),
        ("BigGAN", None),  # no intermediate folder: accepted too
    ):
        base = root / folder / inner if inner else root / folder
        for split, n in (("train", 3), ("val", 2)):
            _imgs(base / split / "ai", n)
            _imgs(base / split / "nature", n, ".JPEG")
    (root / "README.txt").write_text("not a generator")
    (root / "stable_diffusion_v_1_4" / "imagenet_ai_0419_sdv4" / "train" / "ai" / "notes.txt").write_text("x")
    return root


def test_genimage_keys_and_aliases() -> None:
    assert genimage_key("stable_diffusion_v_1_4") == "sdv14"
    assert genimage_key("stable_diffusion_v_1_5") == "sdv15"
    assert genimage_key("Midjourney") == "midjourney"
    assert genimage_key("ADM") == "adm"
    assert genimage_key("glide") == "glide"
    assert genimage_key("VQDM") == "vqdm"
    assert genimage_key("wukong") == "wukong"
    assert genimage_key("BigGAN") == "biggan"
    assert genimage_key("imagenet_ai_0424_sdv5") == "sdv15"
    assert genimage_key("imagenet_midjourney") == "midjourney"
    assert genimage_key("My_New_Gen") == "My_New_Gen"  # an unknown folder keeps its name as on disk


def test_genimage_training_uses_the_chosen_generators_train_split(genimage: Path) -> None:
    samples = training_samples("genimage", genimage)  # default --train-on sdv14
    base = genimage / "stable_diffusion_v_1_4" / "imagenet_ai_0419_sdv4" / "train"
    expected = {(str(base / "ai" / f"{i}.png"), 1, "sdv14") for i in range(3)}
    expected |= {(str(base / "nature" / f"{i}.JPEG"), 0, "sdv14") for i in range(3)}
    assert _triples(samples) == expected
    assert samples == sorted(samples)
    both = training_samples("genimage", genimage, "sdv14,midjourney")
    assert {s.generator for s in both} == {"sdv14", "midjourney"} and len(both) == 12


def test_genimage_evaluates_every_generators_val_split_against_its_own_reals(genimage: Path) -> None:
    groups = evaluation_groups("genimage", genimage)
    assert list(groups) == ["biggan", "midjourney", "sdv14"]
    mj = groups["midjourney"]
    assert len(mj.reals) == len(mj.fakes) == 2
    assert all("Midjourney" in str(s.path) and "/val/" in str(s.path) for s in (*mj.reals, *mj.fakes))
    assert {s.label for s in mj.reals} == {0} and {s.label for s in mj.fakes} == {1}
    assert list(evaluation_groups("genimage", genimage, ["sdv14"])) == ["sdv14"]


def test_genimage_root_may_be_a_single_generator_folder(genimage: Path) -> None:
    samples = training_samples("genimage", genimage / "BigGAN", "biggan")
    assert len(samples) == 6 and {s.generator for s in samples} == {"biggan"}
    inner = training_samples("genimage", genimage / "stable_diffusion_v_1_4")  # intermediate folder only
    assert len(inner) == 6 and {s.generator for s in inner} == {"sdv14"}


def test_unknown_train_on_lists_what_exists(genimage: Path) -> None:
    with pytest.raises(UsageError, match="available: biggan, midjourney, sdv14"):
        training_samples("genimage", genimage, "glide")


def test_diffusionforensics(tmp_path: Path) -> None:
    root = tmp_path / "DF"
    for split in ("train", "test"):
        _imgs(root / split / "lsun_bedroom" / "real", 2)
        _imgs(root / split / "lsun_bedroom" / "adm", 2)
        _imgs(root / split / "lsun_bedroom" / "ddpm", 1)
        _imgs(root / split / "imagenet" / "real" / "n01440764", 2)  # nested class folders
        _imgs(root / split / "imagenet" / "sdv1", 3)
    train = training_samples("diffusionforensics", root)  # default lsun_bedroom/adm
    assert {(s.label, s.generator) for s in train} == {(0, "lsun_bedroom/real"), (1, "lsun_bedroom/adm")}
    assert len(train) == 4 and all("/train/" in str(s.path) for s in train)
    groups = evaluation_groups("diffusionforensics", root)
    assert list(groups) == ["imagenet/sdv1", "lsun_bedroom/adm", "lsun_bedroom/ddpm"]
    # each generator is scored against the reals of its own domain
    assert groups["lsun_bedroom/ddpm"].reals == groups["lsun_bedroom/adm"].reals
    assert len(groups["imagenet/sdv1"].reals) == 2 and all(
        "/test/" in str(s.path) for s in groups["imagenet/sdv1"].reals
    )
    assert len(training_samples("diffusionforensics", root, "lsun_bedroom")) == 5  # a whole domain


def test_forensynths_nested_and_flat(tmp_path: Path) -> None:
    root = tmp_path / "CNNDetection"
    for cls in ("airplane", "car"):
        _imgs(root / "train" / cls / "0_real", 2)
        _imgs(root / "train" / cls / "1_fake", 2)
    _imgs(root / "test" / "stylegan" / "bedroom" / "0_real", 2)
    _imgs(root / "test" / "stylegan" / "car" / "1_fake", 3)
    _imgs(root / "test" / "biggan" / "0_real", 1)
    _imgs(root / "test" / "biggan" / "1_fake", 1)
    train = training_samples("forensynths", root)
    assert len(train) == 8 and sorted({s.label for s in train}) == [0, 1]
    groups = evaluation_groups("forensynths", root)
    assert {k: (len(g.reals), len(g.fakes)) for k, g in groups.items()} == {
        "biggan": (1, 1),
        "stylegan": (2, 3),
    }
    flat = tmp_path / "flat"
    _imgs(flat / "test" / "0_real", 2)
    _imgs(flat / "test" / "1_fake", 2)
    assert {k: (len(g.reals), len(g.fakes)) for k, g in evaluation_groups("forensynths", flat).items()} == {
        "test": (2, 2)
    }


@pytest.mark.parametrize("names", [("real", "fake"), ("0_real", "1_fake")])
def test_folder_layout_shares_reals_across_generators(tmp_path: Path, names: tuple[str, str]) -> None:
    real, fake = names
    _imgs(tmp_path / real / "group1", 2)
    _imgs(tmp_path / real, 1)
    _imgs(tmp_path / fake / "sdxl", 2)
    _imgs(tmp_path / fake / "flux", 1)
    _imgs(tmp_path / fake, 1)  # loose fakes: generator "fake"
    groups = evaluation_groups("folder", tmp_path)
    assert list(groups) == ["fake", "flux", "sdxl"]
    assert all(len(g.reals) == 3 for g in groups.values())
    assert {s.generator for s in groups["sdxl"].fakes} == {"sdxl"}
    samples = training_samples("folder", tmp_path)
    assert len(samples) == 7 and sum(s.label for s in samples) == 4
    only = training_samples("folder", tmp_path, "flux")
    assert sum(s.label for s in only) == 1 and len(only) == 4


def test_generators_keep_their_names_as_on_disk_and_are_chosen_ignoring_case(tmp_path: Path) -> None:
    """`fake/genA` is reported as genA (not gena); --generators / --train-on match it in any case, and an
    unknown name is refused naming the flag the user gave."""
    _imgs(tmp_path / "real", 2)
    _imgs(tmp_path / "fake" / "genA", 2)
    _imgs(tmp_path / "fake" / "GenB", 1)
    assert list(evaluation_groups("folder", tmp_path)) == ["GenB", "genA"]
    assert list(evaluation_groups("folder", tmp_path, ["GENA"])) == ["genA"]
    assert {s.generator for s in training_samples("folder", tmp_path, "gena") if s.label} == {"genA"}
    with pytest.raises(UsageError, match=r"^--generators 'nosuch' not found; available: GenB, genA$"):
        evaluation_groups("folder", tmp_path, ["nosuch"])
    with pytest.raises(UsageError, match=r"^--train-on 'nosuch' not found"):
        training_samples("folder", tmp_path, "nosuch")
    df = tmp_path / "DF" / "test" / "LSUN_Bedroom"
    _imgs(df / "real", 1)
    _imgs(df / "ADM", 1)
    domain = evaluation_groups("diffusionforensics", tmp_path / "DF", ["lsun_bedroom"])
    assert list(domain) == ["LSUN_Bedroom/ADM"]


def test_folder_layout_without_class_folders_is_a_usage_error(tmp_path: Path) -> None:
    _imgs(tmp_path / "images", 2)
    with pytest.raises(UsageError, match="real/ and fake/"):
        list_layout("folder", tmp_path, "train")


def test_manifest_csv_and_jsonl(tmp_path: Path) -> None:
    a, b, c = _img(tmp_path / "a.png"), _img(tmp_path / "sub" / "b.png"), _img(tmp_path / "c.png")
    csv_file = tmp_path / "list.csv"
    csv_file.write_text(f"path,label,generator\na.png,0,\nsub/b.png,1,sdxl\n{c},fake\n")
    samples = training_samples("manifest", csv_file)
    assert _triples(samples) == {(str(a), 0, "real"), (str(b), 1, "sdxl"), (str(c), 1, "fake")}
    jsonl = tmp_path / "list.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"img_path": "a.png", "label": 0},
                {"path": "sub/b.png", "label": "ai", "generator": "SDXL"},
            )
        )
        + "\n"
    )
    groups = evaluation_groups("manifest", jsonl)
    assert list(groups) == ["SDXL"] and groups["SDXL"].reals[0].path == a
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,maybe\n")
    with pytest.raises(UsageError, match=r"bad\.csv:1"):
        training_samples("manifest", bad)


def test_missing_root_and_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a folder"):
        training_samples("genimage", tmp_path / "nope")
    with pytest.raises(UsageError, match="unknown dataset"):
        training_samples("imagenet", tmp_path)
    with pytest.raises(UsageError, match="no 'train' data"):
        training_samples("genimage", tmp_path)
