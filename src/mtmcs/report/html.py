"""One self-contained HTML report: leaderboard tables, plots and a filterable dialogue view.

The file needs nothing beyond itself: inline CSS and JS, plots and scenario images as base64
data URIs (each image once, see `mtmcs.report.media`), no fonts, no CDN, and a
Content-Security-Policy that forbids any network access. Every model- or data-provided string
is either autoescaped by jinja2 (the tables) or embedded as JSON in a
`<script type="application/json">` element (with `<`, `>` and `&` as `\\u003c` …), parsed with
`JSON.parse` and put into the page with `textContent` only (the dialogue list), never as HTML.
The page has a table of contents; in the dialogue list, j / k open the next / previous
dialogue shown.

jinja2 is part of the optional `report` extra and imported only here, lazily.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint
from mtmcs.protocol.authors import authors_judge_score, authors_mcq_choice, authors_tf_answer
from mtmcs.report.agreement import CATEGORY_LABELS, agreement_sections
from mtmcs.report.agreement import HEADER as AGREEMENT_HEADER
from mtmcs.report.breakdowns import UNCATEGORISED, Breakdown
from mtmcs.report.export import CategoryLookup, RunRecords
from mtmcs.report.leaderboard import (
    AUTHORS,
    EXPECTED_NOTE,
    HEADER,
    PUBLISHED_MODALITY,
    PUBLISHED_NOTE,
    READING_NOTE,
    SPLIT_LABELS,
    UNSCORED_NOTE,
    LeaderRow,
    RunSummary,
    _groups,
    displayed_lines,
    format_figure,
    item_notes,
)
from mtmcs.report.media import Media, caption_key, image_key, source_key
from mtmcs.report.sensitivity import SENSITIVITY_NOTE, judge_sensitivity, sensitivity_cells

PLOT_STEMS = (
    ("tradeoff", "Safety–utility trade-off"),
    ("metrics", "Metrics per type × modality"),
    ("modality_gap", "Modality gap per run"),
)
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
# JSON inside <script>: no character that could end the element or start markup survives.
_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def script_json(data: Any) -> str:
    """`data` as JSON safe to place verbatim inside a `<script type="application/json">`."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _JSON_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def table_groups(rows: Sequence[LeaderRow]) -> list[dict[str, Any]]:
    """The leaderboard as plain cells, one group per split × modality (as in the Markdown);
    each line says whether it is in the authors' scripts' reading."""
    groups = []
    for split, modality, group in _groups(rows):
        published = modality == PUBLISHED_MODALITY
        groups.append(
            {
                "title": f"{SPLIT_LABELS.get(split, split)} — {modality}",
                "published": published,
                "notes": item_notes(group),
                "rows": [
                    {"authors": reading == AUTHORS, "cells": cells}
                    for reading, cells in displayed_lines(group)
                ],
            }
        )
    return groups


def _authors_answer(question: dict[str, Any]) -> str | bool | None:
    """What the authors' scripts read in a question's stored reply."""
    raw = question.get("raw")
    return authors_mcq_choice(raw) if question.get("kind") == "mcq" else authors_tf_answer(raw)


def breakdown_sections(tables: Sequence[Breakdown]) -> list[dict[str, Any]]:
    """Each breakdown as plain cells: title, note, header and rows."""
    return [
        {
            "title": table.title,
            "note": table.note,
            "header": ["model", "type", table.group_label, *(c.label for c in table.columns)],
            "rows": [
                [*labels, *(format_figure(figures[c.key], c.percent) for c in table.columns)]
                for labels, figures in table.rows
            ],
        }
        for table in tables
    ]


def _media_keys(source: str, record: dict[str, Any], media: Media) -> tuple[str | None, ...]:
    """The image (its digest, when at hand) and the caption of a multimodal dialogue."""
    row_id = record.get("row_id")
    if record.get("modality") != "multimodal" or row_id is None:
        return None, None
    image = image_key(source, str(record["split"]), row_id, record.get("image_variant") or 0)
    return media.digests.get(image), media.captions.get(caption_key(source, row_id))


def dialogue_data(
    records: Sequence[RunRecords],
    category_of: CategoryLookup | None = None,
    media: Media | None = None,
) -> dict[str, Any]:
    """What the client-side filters and dialogue view need: every run's dialogues and stances,
    and the images (each once) and captions of the multimodal ones."""
    media = media or Media()
    dialogues = []
    for run_records in records:
        run = run_records.run
        source = source_key(run_records)
        stances = run_records.stances.stances if run_records.stances else {}
        for record in run_records.dialogues:
            judge = record.get("judge") or {}
            unsafe_intent = str(record.get("unsafe_intent") or "")
            category = category_of(unsafe_intent) if category_of else None
            image, caption = _media_keys(source, record, media)
            dialogues.append(
                {
                    "run": run.name,
                    "id": str(record.get("id", "")),
                    "split": str(record.get("split", "")),
                    "modality": str(record.get("modality", "")),
                    "intent": str(record.get("intent", "")),
                    "unsafeIntent": unsafe_intent,
                    "category": category or UNCATEGORISED,
                    "stances": list(stances.get(str(record.get("id")), ())),
                    "image_variant": record.get("image_variant"),
                    "image": image,
                    "caption": caption,
                    "error": record.get("error"),
                    "turns": [str(t) for t in record.get("turns") or []],
                    "replies": [None if r is None else str(r) for r in record.get("replies") or []],
                    "judge": {
                        "score": judge.get("score"),
                        "explanation": judge.get("explanation"),
                        "error": judge.get("error"),
                        "authorsScore": authors_judge_score(judge.get("raw")),
                    },
                    "questions": [
                        {
                            "id": q.get("id"),
                            "kind": q.get("kind"),
                            "text": q.get("text"),
                            "options": q.get("options") or [],
                            "ground_truth": q.get("ground_truth"),
                            "raw": q.get("raw"),
                            "answer": q.get("answer"),
                            "authorsAnswer": _authors_answer(q),
                            "correct": q.get("correct"),
                            "error": q.get("error"),
                        }
                        for q in record.get("questions") or []
                    ],
                }
            )
    runs = [r.run for r in records]
    used = {d["image"] for d in dialogues if d["image"]}
    return {
        "runs": [
            {
                "name": run.name,
                "label": run.label,
                "model": run.model,
                "judge": run.judge,
                "kind": run.judge_kind,
            }
            for run in runs
        ],
        "splitLabels": SPLIT_LABELS,
        "images": {key: uri for key, uri in media.images.items() if key in used},
        "dialogues": dialogues,
    }


def contents(records: Sequence[RunRecords]) -> list[dict[str, Any]]:
    """Each run's entry in the table of contents: its label, dialogue count and the index of
    its first dialogue (the anchor `d-<index>`)."""
    entries, first = [], 0
    for r in records:
        entries.append({"label": r.run.label, "count": len(r.dialogues), "first": first})
        first += len(r.dialogues)
    return entries


def _encode(directory: Path) -> list[dict[str, str]]:
    plots = []
    for stem, title in PLOT_STEMS:
        path = directory / f"{stem}.png"
        if path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            plots.append({"title": title, "uri": f"data:image/png;base64,{data}"})
    return plots


def plot_images(runs: Sequence[RunSummary], out: Path) -> tuple[list[dict[str, str]], str | None]:
    """The plots as data URIs (from `out` when png was written there) and a note if none."""
    plots = _encode(out)
    if len(plots) == len(PLOT_STEMS):
        return plots, None
    from mtmcs.report.plots import write_plots

    with tempfile.TemporaryDirectory(prefix="mtmcs-plots-") as scratch:
        try:
            write_plots(runs, Path(scratch))
        except ConfigError as error:
            return [], f"Plots skipped: {error}"
        return _encode(Path(scratch)), None


def render_html(
    records: Sequence[RunRecords],
    rows: Sequence[LeaderRow],
    tables: Sequence[Breakdown] = (),
    plots: Sequence[dict[str, str]] = (),
    plot_note: str | None = None,
    category_of: CategoryLookup | None = None,
    media: Media | None = None,
    agreement: tuple[Sequence[dict[str, Any]], str | None] = ((), None),
) -> str:
    """The whole report page as one string (`agreement`: the judge-agreement section's
    groups and note, `mtmcs.report.agreement.agreement_sections`)."""
    try:
        import jinja2
        from markupsafe import Markup
    except ImportError as error:
        raise ConfigError(
            f"the HTML report needs jinja2: {install_hint('report')} "
            "(or leave html out of --format)"
        ) from error
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(TEMPLATE)
    return template.render(
        csp=CSP,
        expected_note=EXPECTED_NOTE,
        reading_note=READING_NOTE,
        unscored_note=UNSCORED_NOTE,
        published_note=PUBLISHED_NOTE,
        header=list(HEADER),
        groups=table_groups(rows),
        breakdowns=breakdown_sections(tables),
        plots=list(plots),
        plot_note=plot_note,
        runs=[r.run for r in records],
        contents=contents(records),
        media_notes=media.notes if media else [],
        data=Markup(script_json(dialogue_data(records, category_of, media))),
        script=Markup(SCRIPT),
        style=Markup(STYLE),
        agreement=list(agreement[0]),
        agreement_note=agreement[1],
        agreement_header=list(AGREEMENT_HEADER),
        categories=CATEGORY_LABELS,
        sensitivity=[
            {
                "model": t.model,
                "header": ["type — modality", "metric", *t.judges, "spread"],
                "rows": sensitivity_cells(t),
            }
            for t in judge_sensitivity(rows)
        ],
        sensitivity_note=SENSITIVITY_NOTE,
    )


def write_html(
    records: Sequence[RunRecords],
    rows: Sequence[LeaderRow],
    tables: Sequence[Breakdown],
    out: Path,
    category_of: CategoryLookup | None = None,
    media: Media | None = None,
) -> Path:
    """`report.html` in `out` (plots taken from `out` or drawn afresh); its path."""
    plots, note = plot_images([r.run for r in records], out)
    path = out / "report.html"
    sections = agreement_sections(records)
    html = render_html(records, rows, tables, plots, note, category_of, media, sections)
    path.write_text(html, encoding="utf-8")
    return path


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1b1b; }
h1 { margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:nth-child(-n+3), td:nth-child(-n+3) { text-align: left; }
tr.authors td { background: #fbf7ec; }
thead th { background: #f0f0f0; }
.published { color: #555; font-style: italic; }
.note { color: #555; font-size: 0.9rem; }
figure { margin: 0 0 1.5rem; }
figure img { max-width: 100%; border: 1px solid #ddd; }
#filters { display: flex; flex-wrap: wrap; gap: 0.75rem; align-items: end; margin: 0.5rem 0; }
#filters label { display: flex; flex-direction: column; font-size: 0.8rem; }
.dialogue { border: 1px solid #ccc; border-radius: 4px; margin: 0.4rem 0; padding: 0.3rem 0.6rem; }
.dialogue > summary { cursor: pointer; font-family: monospace; }
.tag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 0.3rem;
       margin-left: 0.3rem; font-family: system-ui, sans-serif; font-size: 0.8rem; }
.turn { margin: 0.3rem 0; padding: 0.3rem 0.5rem; white-space: pre-wrap; border-radius: 4px; }
.user { background: #f3f6ff; }
.model { background: #f6f6f6; }
.who { font-weight: bold; display: block; font-size: 0.8rem; color: #444; }
.ok { color: #11691b; } .bad { color: #a11; }
.question { margin: 0.4rem 0; padding-left: 0.5rem; border-left: 3px solid #ddd; }
.raw { white-space: pre-wrap; font-family: monospace; background: #fafafa; }
.scenario { margin: 0.4rem 0; }
.scenario img { max-width: 384px; max-height: 384px; border: 1px solid #ddd; display: block; }
.scenario figcaption { max-width: 48rem; font-size: 0.9rem; margin-top: 0.2rem; }
.dialogue:focus-within { outline: 2px solid #4a6ee0; }
nav#toc { font-size: 0.9rem; margin-bottom: 1rem; }
nav#toc ul { margin: 0.2rem 0; }
.items { font-size: 0.85rem; color: #7a4b00; }
.heatmaps { display: flex; flex-wrap: wrap; gap: 1rem; }
table.heatmap td, table.heatmap th { width: 2.2rem; text-align: center; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("dialogue-data").textContent);
  const runs = new Map(data.runs.map((r) => [r.name, r]));
  const list = document.getElementById("dialogues");
  const count = document.getElementById("count");
  const filters = {
    run: (d) => d.run,
    split: (d) => d.split,
    modality: (d) => d.modality,
    intent: (d) => d.intent,
    category: (d) => d.category,
    score: (d) => (d.judge.score === null || d.judge.score === undefined
      ? "none" : String(d.judge.score)),
  };
  const labels = {
    run: (v) => (runs.has(v) ? runs.get(v).label : v),
    split: (v) => data.splitLabels[v] || v,
    score: (v) => (v === "none" ? "no score" : v),
  };

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  for (const [name, key] of Object.entries(filters)) {
    const select = document.getElementById("filter-" + name);
    const values = [...new Set(data.dialogues.map(key))].sort();
    for (const value of values) {
      const option = el("option", labels[name] ? labels[name](value) : value);
      option.value = value;
      select.appendChild(option);
    }
    select.addEventListener("change", apply);
  }

  function body(d) {
    const box = el("div");
    const run = runs.get(d.run);
    box.appendChild(el("p", "run: " + run.label + " · directory: " + d.run + " · judge: " +
      run.judge + (run.kind ? " (" + run.kind + ")" : ""), "note"));
    if (d.unsafeIntent) box.appendChild(el("p", "unsafe intent of the scenario: " +
      d.unsafeIntent + " · category: " + d.category, "note"));
    if (d.modality === "multimodal") box.appendChild(scenario(d));
    if (d.error) box.appendChild(el("p", "error: " + d.error, "bad"));
    const turns = Math.max(d.turns.length, d.replies.length);
    for (let i = 0; i < turns; i++) {
      if (i < d.turns.length) {
        const user = el("div", null, "turn user");
        user.appendChild(el("span", "user, turn " + (i + 1), "who"));
        user.appendChild(el("span", d.turns[i], "text"));
        box.appendChild(user);
      }
      if (i < d.replies.length) {
        const reply = el("div", null, "turn model");
        const stance = i < d.stances.length ? " · stance: " + d.stances[i] : "";
        reply.appendChild(el("span", "model, turn " + (i + 1) + stance, "who"));
        reply.appendChild(el("span", d.replies[i] === null ? "(no reply)" : d.replies[i],
          "text reply"));
        box.appendChild(reply);
      }
    }
    const judge = el("div", null, "judge");
    judge.appendChild(el("h4", "Judge score: " + (d.judge.score ?? "none")));
    if (!d.judge.error) judge.appendChild(el("p", "authors' scripts read score: " +
      (d.judge.authorsScore ?? "none"), "note"));
    if (d.judge.explanation) judge.appendChild(el("p", d.judge.explanation));
    if (d.judge.error) judge.appendChild(el("p", "judge error: " + d.judge.error, "bad"));
    box.appendChild(judge);
    if (d.questions.length) box.appendChild(el("h4", "Questions"));
    for (const q of d.questions) {
      const item = el("div", null, "question");
      item.appendChild(el("div", q.id + " (" + q.kind + ")", "who"));
      item.appendChild(el("div", q.text));
      if (q.options.length) {
        const options = el("ol", null);
        options.type = "A";
        for (const option of q.options) options.appendChild(el("li", option));
        item.appendChild(options);
      }
      item.appendChild(el("div", "raw answer:"));
      item.appendChild(el("div", q.raw ?? "(none)", "raw"));
      item.appendChild(el("div", "parsed: " + (q.answer ?? "unparseable") +
        " · ground truth: " + q.ground_truth));
      if (!q.error) item.appendChild(el("div", "authors' scripts read: " +
        (q.authorsAnswer ?? "nothing (dropped)"), "note"));
      const verdict = q.error ? "failed: " + q.error : (q.correct ? "correct" : "incorrect");
      item.appendChild(el("div", verdict, q.correct ? "ok" : "bad"));
      box.appendChild(item);
    }
    return box;
  }

  function scenario(d) {
    const shown = el("figure", null, "scenario");
    if (d.image && data.images[d.image]) {
      const image = el("img");
      image.alt = "scenario image of " + d.id;
      image.src = data.images[d.image];
      shown.appendChild(image);
    } else {
      shown.appendChild(el("p", "image not shown: the run's dataset is not at hand " +
        "(see the note above the dialogue list)", "note"));
    }
    const caption = el("figcaption");
    caption.appendChild(el("span", "image caption (what an LLM judge reads in place of " +
      "the image): ", "who"));
    caption.appendChild(el("span", d.caption ?? "(no caption at hand)", "caption"));
    shown.appendChild(caption);
    return shown;
  }

  const cards = data.dialogues.map((d, i) => {
    const card = el("details", null, "dialogue");
    card.id = "d-" + i;
    const summary = el("summary", d.id);
    const tags = [labels.run(d.run), d.intent, "score " + labels.score(filters.score(d))];
    for (const tag of tags) summary.appendChild(el("span", tag, "tag"));
    card.appendChild(summary);
    card.addEventListener("toggle", () => {
      if (card.open && card.childElementCount === 1) card.appendChild(body(d));
    });
    list.appendChild(card);
    return card;
  });

  function apply() {
    const chosen = Object.keys(filters).map((name) =>
      [filters[name], document.getElementById("filter-" + name).value]);
    let shown = 0;
    data.dialogues.forEach((d, i) => {
      const visible = chosen.every(([key, value]) => value === "" || key(d) === value);
      cards[i].hidden = !visible;
      if (visible) shown++;
    });
    count.textContent = shown + " of " + data.dialogues.length + " dialogues";
  }

  // j / k: the next / previous dialogue shown, opened, focused and scrolled into view
  function step(by) {
    const shown = cards.filter((card) => !card.hidden);
    if (!shown.length) return;
    const current = shown.findIndex((card) => card.contains(document.activeElement));
    const next = current < 0 ? (by > 0 ? 0 : shown.length - 1)
      : Math.min(shown.length - 1, Math.max(0, current + by));
    const card = shown[next];
    card.open = true;  // its toggle handler adds the body
    card.querySelector("summary").focus({ preventScroll: true });
    card.scrollIntoView({ block: "start" });
  }
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest && event.target.closest("select, input, textarea")) return;
    if (event.key === "j") { step(1); event.preventDefault(); }
    if (event.key === "k") { step(-1); event.preventDefault(); }
  });
  function fromHash() {
    const card = location.hash.startsWith("#d-") && document.getElementById(location.hash.slice(1));
    if (card && !card.hidden) { card.open = true; card.scrollIntoView({ block: "start" }); }
  }
  window.addEventListener("hashchange", fromHash);
  apply();
  fromHash();
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MTMCS-Bench report</title>
<style>{{ style }}</style>
</head>
<body>
<h1>MTMCS-Bench report</h1>
<p class="note">Runs: {% for run in runs %}{{ run.label }} ({{ run.name }}){% if not loop.last %},
{% endif %}{% endfor %}.</p>

<nav id="toc"><strong>Contents</strong>
<ul>
<li><a href="#leaderboard">Leaderboard</a><ul>
{% for group in groups %}<li><a href="#table-{{ loop.index }}">{{ group.title }}</a></li>
{% endfor %}</ul></li>
{% if breakdowns %}<li><a href="#breakdowns">Breakdowns</a></li>{% endif %}
<li><a href="#plots">Plots</a></li>
{% if agreement or agreement_note or sensitivity %}<li><a href="#judge-agreement">Judge
agreement and sensitivity</a></li>{% endif %}
<li><a href="#dialogue-list">Dialogues</a> (j / k: next / previous dialogue)<ul>
{% for entry in contents %}<li><a href="#d-{{ entry.first }}">{{ entry.label }}</a>
({{ entry.count }} dialogues)</li>
{% endfor %}</ul></li>
</ul></nav>

<h2 id="leaderboard">Leaderboard</h2>
<p class="note">Accuracies in %, judge scores 1–5; each cell: value [95% CI] n=items, the
interval clustered by scenario row (see docs/statistics.md).
{{ unscored_note }}</p>
<p class="note" id="reading-note">{{ reading_note }}</p>
<p class="note">Rows marked [heuristic judge] were scored by a keyword heuristic, not an LLM
judge: their safety-awareness and helpfulness are not comparable with the paper's.
{{ expected_note }}</p>
{% for group in groups %}
<h3 id="table-{{ loop.index }}">{{ group.title }}</h3>
{% if group.published %}<p class="note">{{ published_note }}</p>{% endif %}
<table class="leaderboard{% if group.published %} published{% endif %}">
<thead><tr>{% for label in header %}<th>{{ label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in group.rows %}<tr{% if row.authors %} class="authors"{% endif %}>
{%- for cell in row.cells %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% for note in group.notes %}<p class="items">{{ note }}</p>
{% endfor %}
{% endfor %}

{% if breakdowns %}<h2 id="breakdowns">Breakdowns</h2>{% endif %}
{% for table in breakdowns %}
<h3>{{ table.title }}</h3>
<p class="note">{{ table.note }}</p>
<table class="breakdown">
<thead><tr>{% for label in table.header %}<th>{{ label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in table.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}

<h2 id="plots">Plots</h2>
{% if plot_note %}<p class="note" id="plot-note">{{ plot_note }}</p>{% endif %}
{% for plot in plots %}
<figure><img src="{{ plot.uri }}" alt="{{ plot.title }}"><figcaption>{{ plot.title }}</figcaption>
</figure>
{% endfor %}

{% if agreement or agreement_note or sensitivity %}<h2 id="judge-agreement">Judge agreement
and sensitivity</h2>
<p class="note">Runs of the same answers judged by different judges (mtmcs rejudge), compared
on the dialogues both scored: quadratic-weighted Cohen's kappa, Spearman's rho, exact and
within-one agreement, Krippendorff's ordinal alpha, each with a 95% bootstrap interval; the
heatmaps are the pooled confusion matrices (darker: more dialogues). See docs/judges.md.</p>
{% if agreement_note %}<p class="note" id="agreement-note">{{ agreement_note }}</p>{% endif %}
{% for group in agreement %}
<h3>{{ group.title }}</h3>
<table class="agreement">
<thead><tr>{% for label in agreement_header %}<th>{{ label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in group.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<div class="heatmaps">
{% for map in group.heatmaps %}<figure><table class="heatmap">
<caption>{{ map.title }}</caption>
<thead><tr><th></th>{% for c in categories %}<th>{{ c }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in map.cells %}<tr><th>{{ categories[loop.index0] }}</th>
{%- for cell in row %}<td style="{{ cell.style }}">{{ cell.count }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></figure>
{% endfor %}</div>
{% endfor %}
{% if sensitivity %}<h3 id="judge-sensitivity">Judge sensitivity</h3>
<p class="note">{{ sensitivity_note }}</p>{% endif %}
{% for table in sensitivity %}<h4>{{ table.model }}</h4>
<table class="sensitivity">
<thead><tr>{% for label in table.header %}<th>{{ label }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in table.rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endfor %}
{% endif %}

<h2 id="dialogue-list">Dialogues</h2>
{% for note in media_notes %}<p class="note media-note">{{ note }}</p>
{% endfor %}
<div id="filters">
<label>model / run<select id="filter-run"><option value="">all</option></select></label>
<label>type<select id="filter-split"><option value="">all</option></select></label>
<label>modality<select id="filter-modality"><option value="">all</option></select></label>
<label>intent<select id="filter-intent"><option value="">all</option></select></label>
<label>harm category<select id="filter-category"><option value="">all</option></select></label>
<label>judge score<select id="filter-score"><option value="">all</option></select></label>
<span id="count" class="note"></span>
</div>
<p class="note">Click a dialogue (or press j / k) to see its image and the judge's caption,
its turns, replies, questions and judge verdict.</p>
<div id="dialogues"></div>
<script type="application/json" id="dialogue-data">{{ data }}</script>
<script>{{ script }}</script>
</body>
</html>
"""
