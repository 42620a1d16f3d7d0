"""Content-addressed build calls: the store knows images by their bytes, not their names.

The stages name an image by its file name (in call items such as `writer/IMG.jpg#0` and as
the image id of a message). `BuildCaller` rewrites both to the image's content id (a prefix
of the sha256 of its bytes) before the store sees them, so replacing an image's bytes under
the same name makes its calls again and renaming an image reuses them. `reject` turns a
stored answer that failed validation into a failed call, so a rerun asks again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace

from mtmcs.engine.calls import Answer, Caller, Parse
from mtmcs.engine.limits import AdaptiveLimiter
from mtmcs.engine.store import CallRecord, Store, request_key
from mtmcs.models.base import ChatModel, ChatRequest
from mtmcs.models.judges import JudgeRequest


class BuildCaller(Caller):
    """A `Caller` whose items and image ids name images by content (`ids`: name → id)."""

    def __init__(
        self, model: ChatModel, store: Store, limiter: AdaptiveLimiter, ids: Mapping[str, str]
    ) -> None:
        super().__init__(model, store, limiter)
        self.ids = dict(ids)
        names = sorted(self.ids, key=len, reverse=True)  # the longest name wins a tie
        self._names = re.compile("|".join(map(re.escape, names))) if names else None

    def item(self, item: str) -> str:
        """`item` with every image name replaced by its content id."""
        if self._names is None:
            return item
        return self._names.sub(lambda found: self.ids[found.group(0)], item)

    def request(self, request: ChatRequest) -> ChatRequest:
        """`request` with its images named by content id."""
        messages = tuple(
            replace(m, image_id=self.ids.get(m.image_id, m.image_id)) if m.image_id else m
            for m in request.messages
        )
        return replace(request, messages=messages)

    async def __call__(
        self,
        item: str,
        request: ChatRequest | JudgeRequest,
        *,
        parse: Parse | None = None,
        kind: str | None = None,
    ) -> Answer | str:
        if isinstance(request, ChatRequest):
            request = self.request(request)
        if parse is None:
            return await super().__call__(self.item(item), request, kind=kind)
        return await super().__call__(self.item(item), request, parse=parse, kind=kind)

    def reject(self, item: str, request: ChatRequest, kind: str, cause: str) -> None:
        """Store the answer to this call as failed with `cause` (the next build asks again)."""
        item, request = self.item(item), self.request(request)
        key = request_key(self.name, item, request)
        self.store.put(CallRecord.failed(key, item, self.name, kind, cause, 0.0))
