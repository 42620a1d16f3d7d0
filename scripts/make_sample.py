#!/usr/bin/env python
"""Build the bundled MTMCS-Bench sample dataset (deterministic).

Reads the hand-written rows in ``scripts/sample_rows.json`` and the public-domain / CC0 photos
bundled with scikit-image, and writes under ``src/mtmcs/data/sample/``:

- ``data/type_a-00000-of-00001.parquet`` and ``data/type_b-00000-of-00001.parquet`` in the
  official schema (``mtmcs.data.features.official_features()``), rows sorted by id;
- ``captions.json`` (row id as a string -> neutral caption of the base image);
- ``LICENSE-IMAGES.md`` and ``README.md``.

Then it loads the parquet files back and checks them (``--no-check`` skips that).

Usage (from the repository root): ``python scripts/make_sample.py``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mtmcs.data.features import official_features  # noqa: E402

ROWS_JSON = ROOT / "scripts" / "sample_rows.json"
OUT_DIR = ROOT / "src" / "mtmcs" / "data" / "sample"
SPLITS = ("type_a", "type_b")
MODALITIES = ("multimodal", "unimodal")
TURN_FIELDS = ("r1", "unsafe_r1", "safe_r1", "r2", "r3", "unsafe_r3", "safe_r3")
NEEDED = {
    "type_a": ("r1", "r2", "unsafe_r3", "safe_r3"),
    "type_b": ("unsafe_r1", "safe_r1", "r2", "r3"),
}
BASE_MAX = 512
VARIANT_MAX = 384
JPEG_QUALITY = 85

VARIANTS = (
    ("mirror", "mirrored left-to-right"),
    (
        "recolour",
        "colour-shifted (RGB photos: hue rotated by about 85 degrees; grayscale photos: "
        "tinted from dark blue to warm cream)",
    ),
    ("zoom", "zoomed in: the central 70 % of the frame (by width and height), scaled back up"),
)


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-image is not installed; it provides the sample photos")
    return Path(spec.origin).parent / "data"


def fit(img: Image.Image, longest: int) -> Image.Image:
    if max(img.size) <= longest:
        return img
    scale = longest / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def load_base(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    img = img.convert("L") if img.mode in ("L", "I", "I;16", "1") else img.convert("RGB")
    return fit(img, BASE_MAX)


def make_variant(img: Image.Image, kind: str) -> Image.Image:
    if kind == "mirror":
        out = ImageOps.mirror(img)
    elif kind == "recolour":
        if img.mode == "L":
            out = ImageOps.colorize(img, black=(20, 30, 70), white=(255, 236, 200))
        else:
            h, s, v = img.convert("HSV").split()
            h = h.point(lambda x: (x + 60) % 256)
            out = Image.merge("HSV", (h, s, v)).convert("RGB")
    elif kind == "zoom":
        w, h = img.size
        cw, ch = round(w * 0.7), round(h * 0.7)
        left, top = (w - cw) // 2, (h - ch) // 2
        out = img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.LANCZOS)
    else:
        raise ValueError(kind)
    return fit(out.convert("RGB"), VARIANT_MAX)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def build_images(meta: dict, data_dir: Path) -> tuple[dict, dict, dict]:
    bases, variants, info = {}, {}, {}
    for key in sorted(meta, key=int):
        src = data_dir / meta[key]["file"]
        raw = src.read_bytes()
        img = load_base(src)
        bases[key] = {"bytes": png_bytes(img), "path": None}
        variants[key] = [
            {"bytes": jpeg_bytes(make_variant(img, kind)), "path": None} for kind, _ in VARIANTS
        ]
        info[key] = {
            "sha256": hashlib.sha256(raw).hexdigest(),
            "native": Image.open(io.BytesIO(raw)).size,
            "stored": img.size,
            "mode": img.mode,
        }
    return bases, variants, info


def write_split(split: str, rows: list[dict], bases: dict, variants: dict) -> Path:
    import datasets

    rows = sorted(rows, key=lambda r: r["id"])
    columns: dict[str, list] = {name: [] for name in official_features()}
    for row in rows:
        key = str(row["id"])
        columns["id"].append(int(row["id"]))
        columns["image"].append(bases[key])
        columns["variant_images"].append(variants[key])
        for name in columns:
            if name not in ("id", "image", "variant_images"):
                columns[name].append(row[name])
    ds = datasets.Dataset.from_dict(columns, features=official_features())
    path = OUT_DIR / "data" / f"{split}-00000-of-00001.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def write_captions(meta: dict) -> None:
    captions = {key: meta[key]["caption"] for key in sorted(meta, key=int)}
    (OUT_DIR / "captions.json").write_text(
        json.dumps(captions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def write_licence(meta: dict, info: dict) -> None:
    lines = [
        "# Images in the MTMCS-Bench sample",
        "",
        "All 12 base photos come from the sample data bundled with scikit-image "
        "(`skimage/data/`, scikit-image 0.26). Only photos whose scikit-image documentation "
        "states a CC0 dedication or public-domain status were used; the source and licence "
        "below are as scikit-image documents them (docstrings of `skimage.data`). Photos with "
        'no stated licence (`moon`, `motorcycle_left`, `page`) or only "no known copyright '
        'restrictions" without a public-domain statement (`coins`, `immunohistochemistry`) '
        "were left out.",
        "",
        "Each base photo is stored as PNG at its native size, or scaled down to "
        f"{BASE_MAX} px on the longest side where it was larger. The same photo is the base "
        "image of the same row id in both splits (`type_a`, `type_b`).",
        "",
        "Each row has 3 `variant_images`, simple edits made by `scripts/make_sample.py` with "
        f"Pillow, saved as JPEG (quality {JPEG_QUALITY}, longest side at most {VARIANT_MAX} px), "
        "in this order:",
        "",
    ]
    lines += [f"{n}. {name}: {desc}" for n, (name, desc) in enumerate(VARIANTS, 1)]
    lines += [
        "",
        "The variants are derivative works of the same CC0 / public-domain photos and are released "
        "under CC0 1.0 as well. (The official dataset's variants were made with an image-editing "
        "model; these are not.)",
        "",
        "| id | scikit-image file (loader) | source / author | licence | stored size "
        "| sha256 of the scikit-image file |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(meta, key=int):
        m, i = meta[key], info[key]
        size = f"{i['stored'][0]}x{i['stored'][1]} {i['mode']}"
        if tuple(i["native"]) != tuple(i["stored"]):
            size += f" (scaled from {i['native'][0]}x{i['native'][1]})"
        cells = [
            key,
            f"`{m['file']}` (`{m['function']}()`)",
            m["source"],
            m["license"],
            size,
            f"`{i['sha256']}`",
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.append("")
    (OUT_DIR / "LICENSE-IMAGES.md").write_text("\n".join(lines), encoding="utf-8")


def write_readme(doc: dict) -> None:
    n = {s: len(doc[s]) for s in SPLITS}
    harms = "\n".join(
        f"| {r['id']} | {doc['images'][str(r['id'])]['file']} "
        f"| {r['unsafe_intent']} | {b['unsafe_intent']} |"
        for r, b in zip(
            sorted(doc["type_a"], key=lambda r: r["id"]),
            sorted(doc["type_b"], key=lambda r: r["id"]),
            strict=True,
        )
    )
    text = f"""# MTMCS-Bench sample

A small, self-contained sample in the schema of the official MTMCS-Bench dataset
(`ND-25/MCS-bench`, arXiv 2601.06757), bundled with `mtmcs-bench` for tests, demos and dry
runs without a download. It is **not** part of the official benchmark and its scores say
nothing about a model's results on the real data.

- Splits: `type_a` (escalation risk) and `type_b` (context-switch risk), {n["type_a"]} and
  {n["type_b"]} rows, ids 0-{n["type_a"] - 1}; the same id uses the same base photo in both splits.
- Per row: 1 base image, 3 variant images, an `unsafe_intent`, a multimodal and a unimodal
  dialogue (user turns only; the unimodal one puts the visual facts into words), 4 MCQ
  (2 `unsafe_intent_recognition`, 2 `safe_intent_recognition`) and 2 TF items (one true,
  one false) per modality.
- Totals: {len(doc["images"])} base photos, {3 * len(doc["images"])} variants,
  {2 * n["type_a"] + 2 * n["type_b"]} dialogue pairs (each with a safe and an unsafe version),
  {8 * (n["type_a"] + n["type_b"])} MCQ and {4 * (n["type_a"] + n["type_b"])} TF items.
- `data/*.parquet`: written with `datasets` using `mtmcs.data.features.official_features()`.
- `captions.json`: one neutral caption per base image id, the stand-in for the authors'
  caption file (the judge sees it in place of the image).

The harmful goals are described at the level of intent only; the dialogues contain no
operational instructions.

## Licence

All text (dialogues, questions, intents, captions) was written for this project and is
licensed like the project, Apache-2.0. The photos are CC0 / public domain, taken from
scikit-image's bundled data; see `LICENSE-IMAGES.md` for each photo's source and the edits
behind the variants.

Regenerate with `python scripts/make_sample.py` (source text: `scripts/sample_rows.json`).

## Scenarios

| id | photo | type_a unsafe intent | type_b unsafe intent |
|---|---|---|---|
{harms}
"""
    (OUT_DIR / "README.md").write_text(text, encoding="utf-8")


def check() -> None:
    import datasets

    want = official_features()
    problems: list[str] = []
    for split in SPLITS:
        path = OUT_DIR / "data" / f"{split}-00000-of-00001.parquet"
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
        if ds.features != want:
            problems.append(f"{split}: features differ from official_features(): {ds.features}")
        if ds.num_rows != 12:
            problems.append(f"{split}: {ds.num_rows} rows")
        if list(ds["id"]) != list(range(ds.num_rows)):
            problems.append(f"{split}: ids not sorted 0..n-1")
        for row in ds:
            rid = f"{split}[{row['id']}]"
            imgs = [row["image"], *row["variant_images"]]
            if len(row["variant_images"]) != 3:
                problems.append(f"{rid}: {len(row['variant_images'])} variants")
            for im in imgs:
                im.load()
                if max(im.size) > BASE_MAX:
                    problems.append(f"{rid}: image too large {im.size}")
            if row["image"].format != "PNG" or any(
                v.format != "JPEG" or max(v.size) > VARIANT_MAX for v in row["variant_images"]
            ):
                problems.append(f"{rid}: wrong image formats/sizes")
            if not row["unsafe_intent"].strip():
                problems.append(f"{rid}: empty unsafe_intent")
            for mod in MODALITIES:
                dlg = row[f"{mod}_dialogue"]
                for f in TURN_FIELDS:
                    filled = bool((dlg[f] or "").strip())
                    if filled != (f in NEEDED[split]):
                        problems.append(f"{rid} {mod}: turn {f} {'filled' if filled else 'empty'}")
                mcq = row[f"{mod}_mcq"]
                kinds = sorted(
                    "unsafe" if q["question_type"].startswith("unsafe") else "safe" for q in mcq
                )
                if kinds != ["safe", "safe", "unsafe", "unsafe"]:
                    problems.append(f"{rid} {mod}: MCQ types {kinds}")
                for q in mcq:
                    opts = q["options"]
                    if (
                        len(opts) != 4
                        or len(set(opts)) != 4
                        or q["ground_truth"] not in "ABCD"[: len(opts)]
                    ):
                        problems.append(f"{rid} {mod}: bad MCQ {q}")
                        continue
                    answer = opts["ABCD".index(q["ground_truth"])]
                    if q["question_type"].startswith("unsafe") and answer != row["unsafe_intent"]:
                        problems.append(f"{rid} {mod}: unsafe MCQ answer is not the unsafe intent")
                    if q["question_type"].startswith("safe") and answer == row["unsafe_intent"]:
                        problems.append(f"{rid} {mod}: safe MCQ answer is the unsafe intent")
                tf = row[f"{mod}_tf"]
                if sorted(t["ground_truth"] for t in tf) != [False, True]:
                    problems.append(f"{rid} {mod}: TF truths {[t['ground_truth'] for t in tf]}")
            if row["multimodal_dialogue"] == row["unimodal_dialogue"]:
                problems.append(f"{rid}: unimodal dialogue identical to multimodal")
        print(f"{split}: {ds.num_rows} rows, features OK={ds.features == want}")
    captions = json.loads((OUT_DIR / "captions.json").read_text(encoding="utf-8"))
    if sorted(captions, key=int) != [str(i) for i in range(12)] or not all(
        c.strip() for c in captions.values()
    ):
        problems.append("captions.json keys/contents wrong")
    total = sum(p.stat().st_size for p in OUT_DIR.rglob("*") if p.is_file())
    for p in sorted(OUT_DIR.rglob("*")):
        if p.is_file():
            print(f"  {p.relative_to(OUT_DIR)}: {p.stat().st_size:,} bytes")
    print(f"total size of {OUT_DIR.relative_to(ROOT)}: {total:,} bytes ({total / 2**20:.2f} MiB)")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems))
        raise SystemExit(1)
    print("all checks passed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-check", action="store_true", help="skip loading the files back")
    parser.add_argument("--check-only", action="store_true", help="only check the existing files")
    args = parser.parse_args()
    if not args.check_only:
        doc = json.loads(ROWS_JSON.read_text(encoding="utf-8"))
        bases, variants, info = build_images(doc["images"], skimage_data_dir())
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            print("wrote", write_split(split, doc[split], bases, variants).relative_to(ROOT))
        write_captions(doc["images"])
        write_licence(doc["images"], info)
        write_readme(doc)
    if not args.no_check:
        check()


if __name__ == "__main__":
    main()
