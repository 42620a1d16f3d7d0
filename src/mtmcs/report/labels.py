"""A self-contained page for labelling a run's dialogues by hand (`mtmcs label`).

Each dialogue shows what the judge reads: its transcript, the image caption (multimodal)
and the rubric it is scored by, and asks for a score 1–5 and a note; the judge's verdict is
not shown (labels are blind). Progress is kept in the browser's `localStorage` under a key
of the page, so closing and reopening the page resumes; the export is a CSV file with the
columns `dialogue_id`, `rater`, `score`, `note` (text cells guarded against spreadsheet
formulas as every CSV of ours), which `mtmcs agreement --labels` reads.

Every string of the run (hostile model replies included) is autoescaped by jinja2; the
script reads only the page's own ids; a Content-Security-Policy forbids any network access.
jinja2 is the `report` extra, imported here lazily.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint
from mtmcs.files import FORMULA_LEADS
from mtmcs.protocol.rubrics import Rubric, rubric_for
from mtmcs.report.html import CSP, script_json
from mtmcs.report.labels_page import SCRIPT, STYLE, TEMPLATE
from mtmcs.scoring.judge_inputs import run_captions, run_rubrics
from mtmcs.scoring.rundir import RunDir
from mtmcs.scoring.runfiles import DialogueRecord

MEASURE_LABELS = {"unsafe": "safety-awareness", "safe": "helpfulness"}


@dataclass(frozen=True, slots=True)
class LabelItem:
    """One dialogue to label: what the judge reads of it."""

    id: str
    split: str
    cell: str
    measure: str
    turns: tuple[str, ...]
    replies: tuple[str, ...]
    caption: str | None
    rubric: Rubric


def sample_records(
    records: Sequence[DialogueRecord], sample: int | None, seed: int
) -> list[DialogueRecord]:
    """The dialogues to label, in id order: those whose turns all have a reply, or `sample`
    of them drawn with `seed`."""
    finished = sorted((r for r in records if r.error is None), key=lambda r: r.id)
    if sample is None or sample >= len(finished):
        return finished
    return sorted(random.Random(seed).sample(finished, sample), key=lambda r: r.id)


def label_items(
    records: Sequence[DialogueRecord],
    captions: Mapping[int, str],
    rubrics: Mapping[str, Rubric],
) -> list[LabelItem]:
    """Each record as the labeller sees it."""
    return [
        LabelItem(
            id=r.id,
            split=r.split,
            cell=r.cell,
            measure=MEASURE_LABELS[r.intent],
            turns=r.turns,
            replies=r.replies,
            caption=captions.get(r.row_id)
            if r.modality == "multimodal" and r.row_id is not None
            else None,
            rubric=rubric_for(r.split, r.modality, r.intent, rubrics),
        )
        for r in records
    ]


def render_label_page(items: Sequence[LabelItem], run: str) -> str:
    """The page as one string (`run` names the run in the title and the storage key)."""
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError as error:
        raise ConfigError(f"the labelling page needs jinja2: {install_hint('report')}") from error
    key = hashlib.sha256("\n".join([run, *(i.id for i in items)]).encode()).hexdigest()[:16]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE)
    return template.render(
        csp=CSP,
        style=Markup(STYLE),
        script=Markup(SCRIPT),
        run=run,
        items=items,
        config=Markup(
            script_json(
                {
                    "storageKey": f"mtmcs-labels:{key}",
                    "ids": [i.id for i in items],
                    "formulaLeads": list(FORMULA_LEADS),
                }
            )
        ),
    )


def write_label_page(
    run_dir: Path,
    out: Path,
    *,
    sample: int | None = None,
    seed: int = 0,
    captions: Path | None = None,
) -> int:
    """Write the labelling page of a run's dialogues to `out`; how many dialogues it holds."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    chosen = sample_records(run.read_dialogues(), sample, seed)
    row_ids = sorted(
        {r.row_id for r in chosen if r.modality == "multimodal" and r.row_id is not None}
    )
    texts = run_captions(summary.metadata.dataset, captions, row_ids) if row_ids else {}
    _, rubrics = run_rubrics(summary)
    html = render_label_page(label_items(chosen, texts, rubrics), str(run_dir))
    out.write_text(html, encoding="utf-8")
    return len(chosen)
