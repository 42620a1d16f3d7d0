"""The labelling page's template, style and script (`mtmcs.report.labels` renders it)."""

from __future__ import annotations

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem;
       color: #1b1b1b; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #ccc;
         padding: 0.5rem 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 0.75rem;
         align-items: center; }
.note { color: #555; font-size: 0.9rem; }
.item { border: 1px solid #ccc; border-radius: 4px; margin: 1rem 0; padding: 0.5rem 0.8rem; }
.item.done { border-color: #11691b; }
.item h2 { font-size: 1rem; font-family: monospace; margin: 0.2rem 0; }
.tag { display: inline-block; background: #eef; border-radius: 3px; padding: 0 0.3rem;
       margin-right: 0.3rem; font-size: 0.8rem; }
.turn { margin: 0.3rem 0; padding: 0.3rem 0.5rem; white-space: pre-wrap; border-radius: 4px; }
.user { background: #f3f6ff; } .model { background: #f6f6f6; }
.who { font-weight: bold; display: block; font-size: 0.8rem; color: #444; }
.caption { font-style: italic; }
.rubric pre { white-space: pre-wrap; font-size: 0.85rem; background: #fafafa; padding: 0.4rem; }
fieldset { border: none; padding: 0; margin: 0.5rem 0; }
fieldset label { margin-right: 0.8rem; }
textarea { width: 100%; min-height: 3rem; }
#message { color: #a11; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const config = JSON.parse(document.getElementById("label-config").textContent);
  const rater = document.getElementById("rater");
  const progress = document.getElementById("progress");
  const message = document.getElementById("message");
  const items = [...document.querySelectorAll("section.item")];
  let state = { rater: "", labels: {} };
  try {
    const saved = JSON.parse(localStorage.getItem(config.storageKey) || "null");
    if (saved && typeof saved === "object" && saved.labels) state = saved;
  } catch (error) { /* unreadable saved progress: start afresh */ }

  function save() {
    try { localStorage.setItem(config.storageKey, JSON.stringify(state)); }
    catch (error) { message.textContent = "progress cannot be saved in this browser"; }
  }

  function show() {
    let done = 0;
    items.forEach((item) => {
      const label = state.labels[config.ids[Number(item.dataset.index)]];
      const scored = Boolean(label && label.score);
      item.classList.toggle("done", scored);
      if (scored) done++;
    });
    progress.textContent = done + " of " + items.length + " labelled";
  }

  rater.value = state.rater || "";
  rater.addEventListener("input", () => { state.rater = rater.value.trim(); save(); });
  items.forEach((item) => {
    const id = config.ids[Number(item.dataset.index)];
    const label = state.labels[id] || {};
    const note = item.querySelector("textarea.note");
    for (const choice of item.querySelectorAll("input.score")) {
      choice.checked = Number(choice.value) === label.score;
      choice.addEventListener("change", () => {
        state.labels[id] = { ...(state.labels[id] || {}), score: Number(choice.value) };
        save(); show();
      });
    }
    note.value = label.note || "";
    note.addEventListener("input", () => {
      state.labels[id] = { ...(state.labels[id] || {}), note: note.value };
      save();
    });
  });

  function cell(value) {
    let text = String(value);
    if (typeof value === "string" && config.formulaLeads.some((lead) => text.startsWith(lead))) {
      text = "'" + text;  // a spreadsheet shows it as text, never runs it
    }
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function csv() {
    const lines = ["dialogue_id,rater,score,note"];
    for (const id of config.ids) {
      const label = state.labels[id];
      if (!label || !label.score) continue;
      lines.push([id, state.rater, label.score, label.note || ""].map(cell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }

  document.getElementById("export").addEventListener("click", () => {
    if (!state.rater) {
      message.textContent = "enter your name as rater first";
      rater.focus();
      return;
    }
    message.textContent = "";
    const link = document.getElementById("download");
    link.href = URL.createObjectURL(new Blob([csv()], { type: "text/csv" }));
    link.download = "labels-" + state.rater.replace(/[^A-Za-z0-9_.-]+/g, "_") + ".csv";
    link.click();
  });
  show();
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{ csp }}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MTMCS-Bench labels: {{ run }}</title>
<style>{{ style }}</style>
</head>
<body>
<h1>Label dialogues</h1>
<p class="note">Run: {{ run }}. Score each dialogue 1–5 by its rubric, as the judge does: the
judge reads the transcript and, for a multimodal dialogue, the image caption in place of the
image. The judge's own score is not shown. Your labels stay in this browser until you export
them as CSV (dialogue_id, rater, score, note) for <code>mtmcs agreement --labels</code>.</p>
<header>
<label>rater <input id="rater" autocomplete="name"></label>
<span id="progress" class="note"></span>
<button id="export" type="button">Export CSV</button>
<a id="download" hidden>download</a>
<span id="message"></span>
</header>
{% for item in items %}
<section class="item" id="item-{{ loop.index0 }}" data-index="{{ loop.index0 }}">
<h2>{{ item.id }}</h2>
<p><span class="tag">{{ item.split }}</span><span class="tag">{{ item.cell }}</span><span
class="tag">{{ item.measure }}</span></p>
{% if item.caption is not none %}<p><span class="who">image caption (what the judge reads in
place of the image)</span><span class="caption">{{ item.caption }}</span></p>{% endif %}
{% for turn in item.turns %}
<div class="turn user"><span class="who">user, turn {{ loop.index }}</span>{{ turn }}</div>
{% if loop.index0 < item.replies|length -%}
<div class="turn model"><span class="who">assistant, turn {{ loop.index }}</span>
{{- item.replies[loop.index0] }}</div>{% endif %}
{% endfor %}
<details class="rubric"><summary>Rubric: {{ item.rubric.key }}</summary>
<pre>{{ item.rubric.text }}</pre></details>
<fieldset><legend>{{ item.measure }} score</legend>
{% set outer = loop.index0 %}{% for score in range(1, 6) %}<label><input type="radio"
class="score" name="score-{{ outer }}" value="{{ score }}"> {{ score }}</label>
{% endfor %}</fieldset>
<label class="note">note<textarea class="note" aria-label="note"></textarea></label>
</section>
{% endfor %}
<script type="application/json" id="label-config">{{ config }}</script>
<script>{{ script }}</script>
</body>
</html>
"""
