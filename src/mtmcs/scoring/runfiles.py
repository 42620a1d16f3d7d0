"""What a run directory's files hold, as typed, versioned records (pydantic).

- `summary.json`: one `Summary`: `format_version` and `metadata` at the top level, then one
  section per split (`type_a`, `type_b`) mapping each cell (a modality, `multimodal@vK` for
  a variant image, `overall`, `variant_consistency`) to its figures (metric name → `Stat`),
  and `dialogues_sha256`, the digest of the `dialogues.jsonl` written with it.
- `dialogues.jsonl`: one `DialogueRecord` per line (a dialogue, its replies, questions, judge).
- `turn_stances.jsonl`: one `StanceRecord` per line (the stance pass's output).

Every JSON object written, the summary and each line of the JSONL files, carries its own
`format_version` (`FORMAT_VERSION`, now 1), so a line copied, filtered or appended elsewhere
still says what it is. A file without one was written before versioning: version 0, read by
the same models when it validates (fields added later have defaults). The version goes up
when a reader of the previous version would misread a file (a field removed, renamed or
changed in meaning); a new field alone does not bump it, and readers ignore fields they do
not know. Readers refuse a file of a newer version (see `mtmcs.scoring.rundir.RunDir`).
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from mtmcs.protocol.prompts import Decoding
from mtmcs.protocol.stances import Stance
from mtmcs.protocol.types import MODALITIES, SPLITS, Intent, Modality, QuestionKind, Split
from mtmcs.scoring.metrics import Stat

FORMAT_VERSION = 1
"""The version of the run files this package writes and the newest it reads."""

Cells = dict[str, dict[str, Stat]]
"""A split's section of the summary: cell name → metric name → figure."""


class RunFile(BaseModel):
    """A record of a run file: frozen, strictly typed, unknown fields ignored."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")


class Versioned(RunFile):
    """A top-level record: it says which format version it was written in."""

    format_version: int = Field(default=FORMAT_VERSION, ge=0)


# --- summary.json ---------------------------------------------------------------------------


class CallCounts(RunFile):
    """Calls of one role (model, judge, or a defence's reward or selector): planned, made,
    taken from the store, failed. A defence's calls of the model (drafts, candidates) are
    each counted; `unfinished` counts answers a defence kept but marked unfinished (CoT's
    reasoning cut off: a question then unparseable)."""

    planned: int = 0
    made: int = 0
    cached: int = 0
    failed: int = 0
    reasoning_exhausted: int = 0
    unfinished: int = 0
    replaced_code_points: int = 0  # invalid code points (lone surrogates) in replies, as U+FFFD
    causes: dict[str, int] = Field(default_factory=dict)  # the 20 most frequent failures


class Concurrency(RunFile):
    """How a role's adaptive connection limit moved during the run."""

    maximum: int
    lowest: float
    final: float
    rate_limited_responses: int


class ImageCounts(RunFile):
    """Images decoded (once each, to validate them) and encoded for sending."""

    decoded: int
    encoded: int


class RunDecoding(RunFile):
    """The decoding of each kind of call, and the seed."""

    turn: Decoding
    mcq: Decoding
    tf: Decoding
    judge: Decoding
    seed: int | None = None


class RayShards(RunFile):
    """How a run was spread over Ray tasks and the calls each role made there."""

    address: str
    shards: int
    calls: dict[str, dict[str, int]]


class DefenceSource(RunFile):
    """Where a defence's text came from: `preset` (`original`: its authors' published text,
    `ours`, `file`), `placement` (`authors`: where they put it; `ours`), `source` (the
    repository and path, the file, or `mtmcs`), the pinned `commit` and the `sha256` of the
    file read (of the text for ours)."""

    preset: str
    placement: str
    source: str
    commit: str | None = None
    sha256: str


class DefenceRetrieval(RunFile):
    """How AdaShield-A retrieved its defence prompts: the query `embedding` (a model, or the
    bag-of-words fallback) and the similarity `threshold` below which queries pass."""

    embedding: str
    threshold: float


class ImmuneRecord(RunFile):
    """How an Immune run chose its replies: `mode` (`guided`: reward-guided decoding, token
    by token; `best-of-n`: the best-of-N approximation, whole candidates scored) and its
    `method` in words, the `reward_model` and whether it is the judge (`reward_is_judge`:
    forced with --allow-judge-reward, biased), `candidates`, their `seeds` and
    `temperature` (best of N; guided: the sampling temperature, `None` = argmax), the
    reward's `weight` and the `top_k` tokens rescored (guided), the `selection` rule, and
    how the intent `questions` were answered (`plain model` unless reward-guided)."""

    mode: str
    method: str
    reward_model: str
    reward_is_judge: bool = False
    candidates: int | None = None
    seeds: str | None = None
    temperature: float | None = None
    weight: float | None = None
    top_k: int | None = None
    selection: str | None = None
    questions: str | None = None


class Rejudged(RunFile):
    """Where a rejudged run's dialogues and answers came from (`mtmcs rejudge`): the source
    `run` directory, its `judge`, and the `dialogues_sha256` of the dialogues read there."""

    run: str
    judge: str
    dialogues_sha256: str | None = None


class RunMetadata(RunFile):
    """What a run was: model, judge, data, settings, and what it cost.

    `model`, `judge` and `splits` are required of every summary; the rest has defaults for
    summaries written before the field existed.
    """

    model: str
    defense: str | None = None
    defense_scope: str | None = None
    defense_text: str | None = None
    defense_source: DefenceSource | None = None
    defense_retrieval: DefenceRetrieval | None = None
    defense_selector: str | None = None
    immune: ImmuneRecord | None = None  # Immune runs only
    judge: str
    judge_kind: str = ""
    dataset: str | None = None
    revision: str | None = None
    splits: tuple[Split, ...]
    modalities: tuple[Modality, ...] = MODALITIES
    rows: int | None = None
    limit: int | None = None
    variants: bool = False
    decoding: RunDecoding | None = None
    model_args: dict[str, Any] | None = None  # `mtmcs run -M key=value`, sent with each call
    image_placement: str | None = None
    image_order: str | None = None
    rubrics: str | None = None
    package_version: str | None = None
    started_at: str | None = None
    wall_s: float | None = None
    calls: dict[str, CallCounts] = Field(default_factory=dict)
    complete: bool | None = None
    concurrency: dict[str, Concurrency] | None = None
    images: ImageCounts | None = None
    ray: RayShards | None = None
    rejudged_from: Rejudged | None = None  # `mtmcs rejudge` runs only

    @property
    def heuristic_judge(self) -> bool:
        """Whether a keyword heuristic, not an LLM, judged the run."""
        return self.judge_kind.startswith("heuristic")

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("ray", "model_args", "immune", "rejudged_from"):  # only runs that have them
            if data.get(key) is None:
                data.pop(key, None)
        return data


class Summary(Versioned):
    """`summary.json`: the run's metadata and, per split it ran, its cells' figures.

    Each split listed in the metadata has a section, and each modality listed has a cell
    in it. A cell may lack a metric registered after the run was written: readers show it
    as missing.
    """

    metadata: RunMetadata
    type_a: Cells | None = None
    type_b: Cells | None = None
    dialogues_sha256: str | None = Field(default=None, pattern="^[0-9a-f]{64}$")
    """The SHA-256 of the `dialogues.jsonl` written with this summary (`None` in summaries
    written before it was recorded): a reader checks that the file beside it is that one."""

    def cells(self, split: str) -> Cells:
        """The cells of a split ({} when the run did not run it)."""
        cells: Cells | None = getattr(self, split) if split in SPLITS else None
        return cells or {}

    def stat(self, split: str, cell: str, name: str) -> Stat | None:
        """One figure, or `None` when the summary lacks it."""
        return self.cells(split).get(cell, {}).get(name)

    @model_validator(mode="after")
    def _listed_splits_have_cells(self) -> Summary:
        for split in self.metadata.splits:
            cells = getattr(self, split)
            if cells is None:
                raise ValueError(f"no '{split}' section although metadata lists it")
            for modality in self.metadata.modalities:
                if modality not in cells:
                    raise ValueError(f"{split} has no '{modality}' cell")
        return self

    @model_serializer(mode="wrap")
    def _without_absent_keys(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in (*SPLITS, "dialogues_sha256"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


# --- dialogues.jsonl ------------------------------------------------------------------------


class JudgeRecord(RunFile):
    """The judge's verdict of a dialogue: its score (`None` when unscored), explanation and
    raw reply, or the error of its call. `masked_raw` is the judge's reply to the replies
    with verdict-like text masked, when they held some (its verdict is the one recorded:
    `mtmcs.engine.judging`)."""

    score: int | None = None
    explanation: str | None = None
    raw: str | None = None
    masked_raw: str | None = None
    error: str | None = None


class QuestionRecord(RunFile):
    """A question asked after a dialogue, the model's raw and parsed answer and whether it
    was right (`answer` is `None` when unparseable; `error` when the call failed)."""

    id: str
    kind: QuestionKind
    text: str = ""
    options: tuple[str, ...] = ()
    ground_truth: str | bool = ""
    raw: str | None = None
    answer: str | bool | None = None
    correct: bool = False
    error: str | None = None


class DialogueRecord(Versioned):
    """One line of `dialogues.jsonl`: a dialogue of a run with its replies, judge verdict and
    questions (`error` when one of its turns failed)."""

    id: str = Field(min_length=1)
    pair_id: str = ""
    split: Split
    row_id: int | None = None
    modality: Modality
    image_variant: int = 0
    intent: Intent
    unsafe_intent: str = ""
    turns: tuple[str, ...]
    replies: tuple[str, ...]
    error: str | None = None
    judge: JudgeRecord = Field(default_factory=JudgeRecord)
    questions: tuple[QuestionRecord, ...] = ()

    @property
    def cell(self) -> str:
        """The metrics cell: the modality, or `multimodal@vK` for a variant image."""
        return self.modality + (f"@v{self.image_variant}" if self.image_variant else "")


# --- turn_stances.jsonl ---------------------------------------------------------------------


class StanceRecord(Versioned):
    """One line of `turn_stances.jsonl`: the stance of each assistant turn of a dialogue and
    the judge that classified them."""

    id: str = Field(min_length=1)
    stances: tuple[Stance, ...] = Field(min_length=1)
    judge: str
