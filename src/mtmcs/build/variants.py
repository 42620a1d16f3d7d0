"""The variants stage: three edited copies of each kept image, checked to keep the risk cue.

Backends (`--variants`):

- `pillow` (default, offline, deterministic): a crop and zoom, a colour and lighting shift, a
  mirror with a mild perspective warp, each drawn from a seed derived from `--variant-seed`,
  the image's sha256 and the variant's number. A stand-in for a generative editor (the
  authors used Qwen-Image); the dataset card says so.
- `openai`: the Images API's edit endpoint (`--variant-model`, default `gpt-image-1`), one
  edit prompt per variant; no seed (the API takes none).
- `diffusers`: a local diffusers image-editing pipeline on a GPU (`--variant-model`, default
  `timbrooks/instruct-pix2pix`; `Qwen/Qwen-Image-Edit` also loads), seeded with a
  `torch.Generator`. Needs the `variants` extra (diffusers, torch).

Every variant is captioned by the captioner; one whose caption keeps less than
`CUE_OVERLAP` of the content words of the original caption lost the scene's risk cue and is
dropped with that reason. Files go to `OUT/images/ID-vK.EXT`; an edit already on disk with
the same provenance is reused (no new edit on a rerun).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import io
import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image, ImageEnhance, ImageOps

from mtmcs.build import schemas as s
from mtmcs.build.content import BuildCaller
from mtmcs.build.gate import content_words
from mtmcs.build.pipeline import BuildState, Drop, StageSettings, structured
from mtmcs.errors import ConfigError
from mtmcs.extras import install_hint

Backend = Literal["pillow", "openai", "diffusers", "none"]
VARIANTS_PER_IMAGE = 3  # as the official dataset has them
CUE_OVERLAP = 0.5
DEFAULT_MODELS = {"openai": "gpt-image-1", "diffusers": "timbrooks/instruct-pix2pix"}
EDIT_PROMPTS = (
    "Show the same scene from a slightly different viewpoint. Keep every object, person "
    "and action exactly as they are.",
    "Change the lighting to warm evening light. Keep every object, person and action "
    "exactly as they are.",
    "Change the background slightly (different wall colour or weather). Keep every object, "
    "person and action in the foreground exactly as they are.",
)


@dataclass(frozen=True)
class Edit:
    """One edited image and how it was made (`params` are JSON-serialisable)."""

    data: bytes
    params: dict[str, Any]
    seed: int | None


class Editor(Protocol):
    """A backend: `edit(data, k)` makes the k-th variant of an image's bytes."""

    name: str

    async def edit(self, data: bytes, k: int) -> Edit: ...

    def settings(self) -> dict[str, Any]: ...


def cue_overlap(original: str, variant: str) -> float:
    """The share of the original caption's content words the variant's caption keeps."""
    words = content_words(original)
    return len(words & content_words(variant)) / len(words) if words else 1.0


def variant_seed(base: int, sha256: str, k: int) -> int:
    """The seed of the k-th variant of an image: stable across runs and machines."""
    digest = hashlib.sha256(f"{base}:{sha256}:{k}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _save(image: Image.Image, like: str) -> bytes:
    buffer = io.BytesIO()
    if like == "JPEG":
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


class PillowEditor:
    """Offline, deterministic geometric and photometric edits (a stand-in)."""

    name = "pillow"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "base_seed": self.seed}

    async def edit(self, data: bytes, k: int) -> Edit:
        seed = variant_seed(self.seed, hashlib.sha256(data).hexdigest(), k)
        rng = random.Random(seed)
        with Image.open(io.BytesIO(data)) as opened:
            fmt = "JPEG" if opened.format in ("JPEG", "MPO") else "PNG"
            image = opened.convert("RGBA" if opened.mode in ("RGBA", "LA", "PA") else "RGB")
        width, height = image.size
        params: dict[str, Any]
        if k % 3 == 0:
            scale = rng.uniform(0.78, 0.9)
            w, h = round(width * scale), round(height * scale)
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            image = image.crop((left, top, left + w, top + h)).resize(
                (width, height), Image.Resampling.LANCZOS
            )
            params = {"edit": "crop_zoom", "box": [left, top, left + w, top + h]}
        elif k % 3 == 1:
            brightness, colour, contrast = (rng.uniform(0.75, 1.25) for _ in range(3))
            image = ImageEnhance.Brightness(image).enhance(brightness)
            image = ImageEnhance.Color(image).enhance(colour)
            image = ImageEnhance.Contrast(image).enhance(contrast)
            params = {
                "edit": "colour_light",
                "brightness": round(brightness, 4),
                "colour": round(colour, 4),
                "contrast": round(contrast, 4),
            }
        else:
            dx, dy = width * 0.06, height * 0.06
            quad = [
                round(v, 2)
                for v in (
                    rng.uniform(0, dx),
                    rng.uniform(0, dy),
                    rng.uniform(0, dx),
                    height - rng.uniform(0, dy),
                    width - rng.uniform(0, dx),
                    height - rng.uniform(0, dy),
                    width - rng.uniform(0, dx),
                    rng.uniform(0, dy),
                )
            ]
            image = ImageOps.mirror(image).transform(
                (width, height), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC
            )
            params = {"edit": "mirror_perspective", "quad": quad}
        return Edit(_save(image, fmt), params, seed)


class OpenAIEditor:
    """The OpenAI Images API's edit endpoint (`images.edit`); the API takes no seed."""

    name = "openai"

    def __init__(
        self, model: str, base_url: str | None, api_key_env: str | None, timeout: float
    ) -> None:
        from openai import AsyncOpenAI

        env = api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if not key and base_url is None:
            raise ConfigError(f"--variants openai needs an API key in ${env}")
        self.model = model
        self._client = AsyncOpenAI(api_key=key or "unused", base_url=base_url, timeout=timeout)

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    async def edit(self, data: bytes, k: int) -> Edit:
        prompt = EDIT_PROMPTS[k % len(EDIT_PROMPTS)]
        with Image.open(io.BytesIO(data)) as opened:
            png = data if opened.format == "PNG" else _save(opened.convert("RGB"), "PNG")
        result = await self._client.images.edit(
            model=self.model, image=("image.png", png, "image/png"), prompt=prompt, n=1
        )
        encoded = result.data[0].b64_json if result.data else None
        if not encoded:
            raise ConfigError(f"the image edit API returned no image for variant {k}")
        return Edit(base64.b64decode(encoded), {"model": self.model, "prompt": prompt}, None)

    async def aclose(self) -> None:
        await self._client.close()


class DiffusersEditor:
    """A diffusers image-editing pipeline on the local GPU, seeded per variant."""

    name = "diffusers"

    def __init__(self, model: str, seed: int = 0, steps: int = 20) -> None:
        try:
            diffusers = importlib.import_module("diffusers")
            import torch
        except ImportError as error:
            raise ConfigError(
                f"--variants diffusers needs diffusers and torch ({error.name} is not "
                f"installed): {install_hint('variants')}, on a machine with a GPU"
            ) from error
        self.model, self.seed, self.steps = model, seed, steps
        self._torch = torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.float16 if device == "cuda" else torch.float32
        self._pipe: Any = diffusers.DiffusionPipeline.from_pretrained(model, torch_dtype=dtype)
        self._pipe.to(device)
        self._device = device

    def settings(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "steps": self.steps}

    async def edit(self, data: bytes, k: int) -> Edit:
        seed = variant_seed(self.seed, hashlib.sha256(data).hexdigest(), k)
        prompt = EDIT_PROMPTS[k % len(EDIT_PROMPTS)]
        generator = self._torch.Generator(self._device).manual_seed(seed)
        with Image.open(io.BytesIO(data)) as opened:
            source = opened.convert("RGB")
        edited = self._pipe(
            prompt=prompt, image=source, generator=generator, num_inference_steps=self.steps
        ).images[0]
        params = {"model": self.model, "prompt": prompt, "steps": self.steps}
        return Edit(_save(edited, "PNG"), params, seed)


def make_editor(
    backend: Backend,
    model: str | None,
    seed: int,
    base_url: str | None,
    api_key_env: str | None,
    timeout: float,
) -> Editor | None:
    """The backend's editor (`None` for `none`)."""
    if backend == "none":
        return None
    if backend == "pillow":
        return PillowEditor(seed)
    if backend == "openai":
        return OpenAIEditor(model or DEFAULT_MODELS["openai"], base_url, api_key_env, timeout)
    return DiffusersEditor(model or DEFAULT_MODELS["diffusers"], seed)


@dataclass
class Variant:
    """One variant of a staged image, with its provenance and the cue check."""

    image: str  # the staged image (relative to OUT)
    k: int
    file: str  # relative to OUT
    settings: dict[str, Any]  # the backend's (reused only when they match)
    params: dict[str, Any]  # this edit's
    seed: int | None
    source_sha256: str
    sha256: str
    caption: str | None = None
    overlap: float | None = None
    dropped: str | None = None

    def record(self) -> dict[str, Any]:
        """Its provenance, as `build_report.json` lists it."""
        return {
            "image": self.image,
            "variant": self.k,
            "file": self.file,
            "backend": self.settings["backend"],
            "settings": self.settings,
            "params": self.params,
            "seed": self.seed,
            "source_sha256": self.source_sha256,
            "sha256": self.sha256,
            "caption": self.caption,
            "cue_overlap": None if self.overlap is None else round(self.overlap, 3),
            "dropped": self.dropped,
        }


def previous(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Variants recorded by an earlier build in `OUT/build_report.json`."""
    path = out / "build_report.json"
    try:
        listed = json.loads(path.read_text(encoding="utf-8")).get("variants", [])
    except (OSError, ValueError):
        return {}
    return {(v["image"], v["variant"]): v for v in listed if isinstance(v, dict)}


async def edit_image(
    editor: Editor,
    out: Path,
    image: str,
    count: int,
    earlier: dict[tuple[str, int], dict[str, Any]],
) -> list[Variant]:
    """`count` variants of the staged `image`, reusing matching edits already on disk."""
    data = (out / image).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    stem = image.rsplit(".", 1)[0]
    made: list[Variant] = []
    settings = editor.settings()
    for k in range(count):
        old = earlier.get((image, k))
        reusable = (
            old is not None
            and old.get("source_sha256") == sha
            and old.get("settings") == settings
            and (out / str(old["file"])).is_file()
        )
        if old is not None and reusable:
            stored = (out / str(old["file"])).read_bytes()
            if hashlib.sha256(stored).hexdigest() == old.get("sha256"):
                made.append(
                    Variant(
                        image,
                        k,
                        str(old["file"]),
                        settings,
                        dict(old["params"]),
                        old.get("seed"),
                        sha,
                        str(old["sha256"]),
                    )
                )
                continue
        edit = await editor.edit(data, k)
        ext = "jpg" if edit.data[:3] == b"\xff\xd8\xff" else "png"
        file = f"{stem}-v{k}.{ext}"
        (out / file).write_bytes(edit.data)
        digest = hashlib.sha256(edit.data).hexdigest()
        made.append(Variant(image, k, file, settings, edit.params, edit.seed, sha, digest))
    return made


def kept_files(records: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Staged image → the files of its variants that kept the cue, from their records."""
    found: dict[str, list[str]] = {}
    for record in sorted(records, key=lambda r: (str(r["image"]), int(r["variant"]))):
        if record.get("dropped") is None:
            found.setdefault(str(record["image"]), []).append(str(record["file"]))
    return found


async def run_variants(
    editor: Editor,
    out: Path,
    captions: dict[str, str],
    caller: BuildCaller,
    state: BuildState,
    register: Callable[[str, Path], None],
    settings: StageSettings,
) -> list[Variant]:
    """Variants of each staged image in `captions` (image → its caption), each captioned
    with the build's stage `settings` (`--temperature`, `--max-tokens`, …) and checked for
    the cue; `register(id, path)` lets the encoder read a variant."""
    earlier = previous(out)

    async def one(image: str) -> list[Variant]:
        try:
            made = await edit_image(editor, out, image, VARIANTS_PER_IMAGE, earlier)
        except Exception as error:  # any backend's failure: the image goes without variants
            state.drops.append(Drop("variants", image, f"edit failed: {error}"))
            return []
        for variant in made:
            variant_id = variant.sha256[:16]
            register(variant_id, out / variant.file)
            found = await structured(
                caller,
                state,
                "caption",
                f"variant_caption/{variant_id}",
                s.caption_prompt(),
                variant_id,
                s.CaptionOut.model_validate,
                settings,
            )
            if found is None:
                variant.dropped = "its caption call failed or was invalid"
                continue
            variant.caption = found.caption
            variant.overlap = cue_overlap(captions[image], found.caption)
            if variant.overlap < CUE_OVERLAP:
                variant.dropped = (
                    f"lost the risk cue: its caption keeps {variant.overlap:.0%} of the "
                    f"original caption's content words (< {CUE_OVERLAP:.0%})"
                )
        return made

    groups = await asyncio.gather(*(one(image) for image in sorted(captions)))
    variants = [variant for group in groups for variant in group]
    for variant in variants:
        if variant.dropped is not None:
            state.drops.append(Drop("variants", variant.file, variant.dropped))
    state.add("variants_made", len(variants))
    state.add("variants_kept", sum(v.dropped is None for v in variants))
    return variants
