"""Writing a build: the official parquet layout, captions, dataset card and review files.

A scenario's `image` and its variants' files are paths relative to OUT (`images/ID.EXT`),
so the dataset can be rewritten after OUT or the source folder moves.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from mtmcs.build.schemas import DialoguesOut, QuestionsOut, Scenario
from mtmcs.data.features import official_features
from mtmcs.errors import ConfigError
from mtmcs.files import csv_cell
from mtmcs.models.images import ImageEncoder
from mtmcs.protocol.types import SPLITS, TURN_FIELDS

SCENARIOS_FILE = "review/scenarios.json"
DIALOGUE_COLUMNS = {
    f"{modality}_{split}_{intent}": (modality, split, intent)
    for modality in ("multimodal", "unimodal")
    for split in SPLITS
    for intent in ("safe", "unsafe")
}
REVIEW_COLUMNS = (
    "key",
    "digest",
    "image",
    "caption",
    "unsafe_intent",
    "safe_intent",
    *DIALOGUE_COLUMNS,
    "questions",
    "variants",
    "decision",
    "fix_json",
)
Variants = Mapping[str, Sequence[str]]
"""A staged image (relative to OUT) → its kept variants' files (relative to OUT)."""
THUMBNAIL_SIDE = 320


def read_image(root: Path, file: str) -> bytes:
    """The bytes of an image of the build (`file` relative to `root`, OUT)."""
    path = root / file
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the build's image {path}: {error.strerror}") from error


def _turns(dialogues: DialoguesOut, split: str) -> dict[str, str]:
    filled = getattr(dialogues, split).model_dump()
    return {name: filled.get(name, "") for name in TURN_FIELDS}


def _assembled(dialogues: DialoguesOut, split: str, intent: str) -> list[str]:
    if split == "type_a":
        a = dialogues.type_a
        return [a.r1, a.r2, a.safe_r3 if intent == "safe" else a.unsafe_r3]
    b = dialogues.type_b
    return [b.safe_r1 if intent == "safe" else b.unsafe_r1, b.r2, b.r3]


def _questions(questions: QuestionsOut, modality: str) -> tuple[list[Any], list[Any]]:
    part = getattr(questions, modality)
    return [m.model_dump() for m in part.mcq], [t.model_dump() for t in part.tf]


def split_columns(
    scenarios: Sequence[Scenario], split: str, root: Path, variants: Variants
) -> dict[str, list[Any]]:
    """The columns of one split in the official schema; ids are positions in `scenarios`
    (a scenario whose split was dropped has no row in it: its id is missing there)."""
    columns: dict[str, list[Any]] = {name: [] for name in official_features()}
    for index, scenario in enumerate(scenarios):
        questions: QuestionsOut | None = getattr(scenario, split)
        if questions is None:
            continue
        columns["id"].append(index)
        columns["image"].append({"bytes": read_image(root, scenario.image), "path": None})
        edited = variants.get(scenario.image, ())
        columns["variant_images"].append(
            [{"bytes": read_image(root, file), "path": None} for file in edited]
        )
        columns["unsafe_intent"].append(scenario.unsafe_intent)
        for modality in ("multimodal", "unimodal"):
            columns[f"{modality}_dialogue"].append(_turns(getattr(scenario, modality), split))
            mcq, tf = _questions(questions, modality)
            columns[f"{modality}_mcq"].append(mcq)
            columns[f"{modality}_tf"].append(tf)
    return columns


def write_dataset(
    out: Path,
    scenarios: Sequence[Scenario],
    counts: Mapping[str, int],
    drops: Sequence[Any],
    variants: Variants | None = None,
    report_extra: Mapping[str, Any] | None = None,
) -> None:
    """`data/type_{a,b}-00000-of-00001.parquet`, `captions.json`, `README.md`, the report
    (`report_extra`: more keys of it, such as the images and variants' provenance)."""
    variants = variants or {}
    from datasets import Dataset

    from mtmcs.data.loaders import _quiet_datasets

    _quiet_datasets()
    (out / "data").mkdir(parents=True, exist_ok=True)
    rows = {}
    for split in SPLITS:
        columns = split_columns(scenarios, split, out, variants)
        rows[split] = len(columns["id"])
        dataset = Dataset.from_dict(columns, features=official_features())
        dataset.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))
    captions = {str(i): scenario.caption for i, scenario in enumerate(scenarios)}
    (out / "captions.json").write_text(
        json.dumps(captions, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    report = {
        "counts": dict(counts),
        "rows": len(scenarios),
        "rows_per_split": rows,
        "drops": list(drops),
        **(report_extra or {}),
    }
    (out / "build_report.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    backends = sorted({str(v.get("backend")) for v in (report_extra or {}).get("variants", [])})
    card = dataset_card(len(scenarios), counts, backends, report)
    (out / "README.md").write_text(card, encoding="utf-8")


def _variants_note(backends: Sequence[str]) -> str:
    if not backends:
        return "`variant_images` are empty. "
    note = (
        f"`variant_images` hold up to 3 edited variants per image (backend: "
        f"{', '.join(backends)}; each captioned again and dropped if its caption lost the "
        "scene's risk cue; provenance per variant in `build_report.json`). "
    )
    if "pillow" in backends:
        note += (
            "**The `pillow` variants are a stand-in**: deterministic crops, colour and "
            "lighting shifts and mirrored perspective warps, not the generative edits "
            "(Qwen-Image) of the official dataset. "
        )
    return note


def _quality_sections(report: Mapping[str, Any]) -> str:
    """The card's quality gate and harm-category tables, from the report."""
    gate = "\n".join(
        f"| {name} | {c['checked']} | {c['passed']} | {c['fixed_by_retry']} | {c['failed']} "
        f"| {100 * c['pass_rate']:.1f}% |"
        for name, c in report.get("gate", {}).items()
    )
    categories = report.get("categories", {})
    used = sum(1 for count in categories.values() if count)
    diversity = "\n".join(f"| {name} | {count} |" for name, count in categories.items())
    rows = report.get("rows_per_split", {})
    return (
        f"Rows per split: {', '.join(f'{k} {v}' for k, v in rows.items())} (a split that "
        "failed the single-turn filter or the gate is dropped alone, so an id can be missing "
        "from one split).\n\n"
        "## Quality gate\n\nDeterministic checks of each stage reply (see docs/build.md); "
        "a failure is retried once with its reason, then dropped. Pass rate: passed at the "
        "first look.\n\n| check | checked | passed | fixed by retry | failed | pass rate |\n"
        f"|---|---|---|---|---|---|\n{gate}\n\n"
        f"## Harm categories\n\n{used} of {len(categories)} categories of the taxonomy "
        f"`mtmcs-harm-10/v1` used.\n\n| category | scenarios |\n|---|---|\n{diversity}\n\n"
    )


def dataset_card(
    rows: int,
    counts: Mapping[str, int],
    backends: Sequence[str] = (),
    report: Mapping[str, Any] | None = None,
) -> str:
    lines = "\n".join(f"| {name} | {value} |" for name, value in counts.items())
    return (
        "# MTMCS-Bench-style dataset (built with `mtmcs build`)\n\n"
        f"Splits `type_a` and `type_b` from {rows} scenarios (ids 0–{max(rows - 1, 0)} shared "
        f"by both splits), in the schema of `ND-25/MCS-bench`. {_variants_note(backends)}"
        "`captions.json` maps each id to its image caption. Generated by a model, checked "
        "automatically (schema, single-turn refusal filter, pairing by construction, "
        "near-duplicate removal, the quality gate below) and optionally by human review; drops "
        "and their reasons are in `build_report.json`.\n\n"
        f"{_quality_sections(report or {})}"
        "## Stage counts\n\n| stage | count |\n|---|---|\n"
        f"{lines}\n"
    )


def save_scenarios(out: Path, scenarios: Sequence[Scenario]) -> None:
    path = out / SCENARIOS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [scenario.model_dump(mode="json") for scenario in scenarios]
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_scenarios(out: Path) -> list[Scenario]:
    path = out / SCENARIOS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Scenario.model_validate(item) for item in data]
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the build's scenarios {path}: {error}") from error


def _dialogue_text(dialogues: DialoguesOut, split: str, intent: str) -> str:
    return "\n".join(
        f"R{i + 1}: {turn}" for i, turn in enumerate(_assembled(dialogues, split, intent))
    )


def _questions_text(scenario: Scenario) -> str:
    lines = []
    for split in SPLITS:
        questions: QuestionsOut | None = getattr(scenario, split)
        if questions is None:
            lines.append(f"{split}: dropped (single-turn filter or gate)")
            continue
        for modality in ("multimodal", "unimodal"):
            part = getattr(questions, modality)
            for m in part.mcq:
                options = "; ".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(m.options))
                lines.append(
                    f"{split} {modality} [{m.question_type}] {m.question} {options} "
                    f"-> {m.ground_truth}"
                )
            lines += [f"{split} {modality} [TF] {t.question} -> {t.ground_truth}" for t in part.tf]
    return "\n".join(lines)


def export_review(
    out: Path,
    scenarios: Sequence[Scenario],
    variants: Variants,
    decisions: Mapping[str, tuple[str, str]],
) -> tuple[Path, Path]:
    """`review/review.csv` and a self-contained `review.html`. `decisions` (scenario digest
    → decision, fix JSON) pre-fill the sheet with what is recorded (default keep)."""
    from mtmcs.build.review import scenario_digest

    folder = out / "review"
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "review.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REVIEW_COLUMNS)
        writer.writeheader()
        for scenario in scenarios:
            shown = {  # model-written text, quoted where a spreadsheet would evaluate it
                "image": scenario.image,
                "caption": scenario.caption,
                "unsafe_intent": scenario.unsafe_intent,
                "safe_intent": scenario.safe_intent,
                **{
                    column: _dialogue_text(getattr(scenario, modality), split, intent)
                    for column, (modality, split, intent) in DIALOGUE_COLUMNS.items()
                },
                "questions": _questions_text(scenario),
                "variants": " ".join(variants.get(scenario.image, ())),
            }
            digest = scenario_digest(scenario)
            decision, fix = decisions.get(digest, ("keep", ""))
            writer.writerow(
                {
                    "key": scenario.key,  # read back by the import, as written
                    "digest": digest,
                    **{name: csv_cell(value) for name, value in shown.items()},
                    "decision": decision,
                    "fix_json": fix,
                }
            )
    html_path = folder / "review.html"
    html_path.write_text(review_html(scenarios, out, variants), encoding="utf-8")
    return csv_path, html_path


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}"
    ".card{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}"
    "img.main{max-width:24em;max-height:18em;float:right;margin-left:1em}"
    ".variants{clear:both;display:flex;gap:.5em;margin:.5em 0}"
    ".variants figure{margin:0}.variants img{max-height:10em}"
    ".d{display:grid;grid-template-columns:1fr 1fr;gap:1em}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}"
    ".unsafe{color:#a00}.q{font-size:90%}"
)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def thumbnail_url(data: bytes, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG `data:` URL of an image (variants on the review page)."""
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _question_list(questions: QuestionsOut, modality: str) -> str:
    part = getattr(questions, modality)
    items = []
    for m in part.mcq:
        options = "; ".join(f"{chr(65 + i)}. {_esc(o)}" for i, o in enumerate(m.options))
        items.append(
            f"<li>[{_esc(m.question_type)}] {_esc(m.question)} — {options} "
            f"<b>→ {_esc(m.ground_truth)}</b></li>"
        )
    items += [f"<li>[TF] {_esc(t.question)} <b>→ {t.ground_truth}</b></li>" for t in part.tf]
    return f"<ul class=q>{''.join(items)}</ul>"


def _variant_strip(root: Path, files: Sequence[str]) -> str:
    if not files:
        return "<p class=variants><i>no variants</i></p>"
    figures = "".join(
        f"<figure><img alt='{_esc(file)}' src='{thumbnail_url(read_image(root, file))}'>"
        f"<figcaption>v{k}</figcaption></figure>"
        for k, file in enumerate(files)
    )
    return f"<div class=variants>{figures}</div>"


def review_html(scenarios: Sequence[Scenario], root: Path, variants: Variants) -> str:
    """One card per scenario: image (data URI), its variants (thumbnails), both dialogues
    per split and modality, the questions with their answers."""
    encoder = ImageEncoder(lambda file: read_image(root, file))
    cards = []
    for scenario in scenarios:
        image = encoder(scenario.image)
        encoder.release(scenario.image)
        parts = [
            f"<div class=card id='{_esc(scenario.key)}'>",
            f"<img class=main alt='{_esc(scenario.image)}' src='{image.data_url.decode()}'>",
            f"<h2>{_esc(scenario.key)}</h2>",
            f"<p><b>Caption:</b> {_esc(scenario.caption)}</p>",
            f"<p class=unsafe><b>Unsafe intent:</b> {_esc(scenario.unsafe_intent)}</p>",
            f"<p><b>Safe intent:</b> {_esc(scenario.safe_intent)}</p>",
            _variant_strip(root, variants.get(scenario.image, ())),
        ]
        for split in SPLITS:
            parts.append(f"<h3>{split}</h3>")
            if getattr(scenario, split) is None:
                parts.append("<p>dropped (single-turn filter or gate): no row</p>")
                continue
            for modality in ("multimodal", "unimodal"):
                dialogues: DialoguesOut = getattr(scenario, modality)
                parts.append(
                    f"<h4>{modality}</h4><div class=d>"
                    f"<div><b>safe</b><pre>{_esc(_dialogue_text(dialogues, split, 'safe'))}</pre>"
                    f"</div><div><b class=unsafe>unsafe</b>"
                    f"<pre>{_esc(_dialogue_text(dialogues, split, 'unsafe'))}</pre></div></div>"
                    f"{_question_list(getattr(scenario, split), modality)}"
                )
        parts.append("</div>")
        cards.append("".join(parts))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mtmcs build review</title>"
        f"<style>{_CSS}</style></head><body><h1>Review ({len(scenarios)} scenarios)</h1>"
        "<p>Record decisions in review.csv: keep, drop, or fix with the edited scenario "
        "JSON in fix_json.</p>" + "".join(cards) + "</body></html>\n"
    )
