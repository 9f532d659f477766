"""Attention-map capture and export nodes."""
from __future__ import annotations

import json
import logging
import os
import re

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..attention.capture import CaptureHandle, CaptureModifier
from ..integration.concepts import ConceptInputError, ConceptModifier, concept_stream
from ..integration.install import install
from ..integration.labels import UnplacedLabels, context_tokens, no_word_labels, words_of
from ..integration.runtime import MEMORY
from .canvas_state import valid_text
from .common import (
    CATEGORY,
    DISPLAY_NAMES,
    MODEL_TOOLTIP,
    block_range_inputs,
    gate,
    node_error,
    percent_input,
    rgb_image,
    supported_family,
)

log = logging.getLogger("joint_attention")
CAPTURE_TYPE = "JA_CAPTURE"
Capture = io.Custom(CAPTURE_TYPE)  # the recording handle from Attention Capture to Attention Maps
_PREFIX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-. /]*$")
MAX_MAPS = 32  # maps one Attention Maps node renders (each is an image-sized heatmap and mask)
MAX_WORDS_CHARS = 32768
MAX_PREFIX_CHARS = 120
MAX_PREFIX_PART = 64
MAX_PREFIX_DEPTH = 8
# Pixels of all maps of one node together (heatmap and mask of each): with an overlay image, the maps are made at
# the image's size scaled down to fit (32 maps of 1024x1024, or 2 of 4096x4096).
MAX_MAP_PIXELS = 32 * 1024 * 1024
MAX_CONCEPTS = 64
MAX_CONCEPTS_CHARS = 4096
MAX_PROMPT_CHARS = 32768  # the Maps node's labelling prompt (tokenized whole)


class JointAttentionCapture(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionCapture",
            display_name=DISPLAY_NAMES["JointAttentionCapture"],
            category=f"{CATEGORY}/maps",
            description="Records, while sampling, the exact share of attention each image token gives to each text "
                        "token (with regions and TACA applied), averaged over heads, blocks and steps. Cond rows only.",
            inputs=[
                io.Model.Input("model", tooltip=MODEL_TOOLTIP),
                *block_range_inputs(),
                percent_input("start_percent", 0.0, "Where in the schedule recording starts."),
                percent_input("end_percent", 1.0, "Where in the schedule recording stops."),
                io.String.Input("concepts", default="", optional=True, tooltip="Comma-separated words for "
                                "ConceptAttention segmentation (e.g. 'cat, sky, grass'); the sampled image is unchanged."),
                io.Clip.Input("clip", optional=True, tooltip="Text encoder for the concepts (the one used for the prompt)."),
            ],
            outputs=[
                io.Model.Output("model_out", display_name="model", tooltip="The model, recording attention while it samples."),
                Capture.Output("capture", display_name="capture", tooltip="Connect to Attention Maps after sampling."),
            ],
        )

    @classmethod
    def validate_inputs(cls, concepts=None):
        # Checked when the prompt is queued: a huge value would otherwise be encoded concept by concept first.
        try:
            if isinstance(concepts, str):
                concept_names(concepts, "JointAttentionCapture")
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, model, double_blocks, single_blocks, start_percent, end_percent, concepts="",
                clip=None) -> io.NodeOutput:
        node = "JointAttentionCapture"
        supported_family(node, model)
        where = gate(node, model, double_blocks, single_blocks, start_percent, end_percent)
        handle = CaptureHandle()
        if concept_names(concepts, node):
            try:
                stream = concept_stream(model, valid_text(concepts), clip, where.double, double_blocks)
            except ConceptInputError as exc:
                raise node_error(node, exc.input_name, str(exc)) from None
            modifier = ConceptModifier(handle, where, stream, registry=MEMORY.registry)
        else:
            modifier = CaptureModifier(handle, where, registry=MEMORY.registry)
        return io.NodeOutput(install(model, modifier), handle)


def concept_names(concepts, node: str) -> list:
    """The comma-separated concepts, checked for size; [] for an empty value. A value of separators only names no
    concept: refused, since it is not empty either (the user meant some concepts)."""
    if concepts is None:
        return []
    if not isinstance(concepts, str):
        raise node_error(node, "concepts", f"expected text, got {type(concepts).__name__}")
    if len(concepts) > MAX_CONCEPTS_CHARS:
        raise node_error(node, "concepts", f"is {len(concepts)} characters long; at most {MAX_CONCEPTS_CHARS} "
                         f"(at most {MAX_CONCEPTS} concepts, each a word or a short phrase)")
    names = [c.strip() for c in concepts.split(",") if c.strip()]
    if concepts.strip() and not names:
        raise node_error(node, "concepts", f"{_shown(concepts)} names no concept, only commas and spaces; write words "
                         "separated by commas (e.g. 'cat, sky, grass') or leave it empty")
    if len(names) > MAX_CONCEPTS:
        raise node_error(node, "concepts", f"at most {MAX_CONCEPTS} concepts, got {len(names)}")
    return names


_POSITION = re.compile(r"^#\d{1,9}$")


def _labelling_prompt(prompt, node: str) -> str:
    """The Maps node's `prompt`, checked for size before it is tokenized, as valid Unicode."""
    prompt = prompt if isinstance(prompt, str) else ""
    if len(prompt) > MAX_PROMPT_CHARS:
        raise node_error(node, "prompt", f"is {len(prompt)} characters long; at most {MAX_PROMPT_CHARS} (the maps "
                         "label only the tokens the model saw: paste the prompt given to the text encoder)")
    return valid_text(prompt)


def _wanted(words: str, node: str) -> list:
    """The comma-separated entries of `words`, checked for form and size (duplicates are merged later)."""
    if len(words) > MAX_WORDS_CHARS:
        raise node_error(node, "words", f"is {len(words)} characters long; at most {MAX_WORDS_CHARS}, and at most "
                         f"{MAX_MAPS} different words")
    wanted = [w.strip() for w in words.split(",") if w.strip()]
    for w in wanted:
        if w.startswith("#") and not _POSITION.match(w):
            raise node_error(node, "words", f"{_shown(w)} is not a position: write # and a number, e.g. #3")
    return wanted


def colormap(x: torch.Tensor) -> torch.Tensor:
    """[H, W] in [0, 1] -> [H, W, 3], dark blue through red to yellow."""
    stops = torch.tensor([[0.05, 0.03, 0.25], [0.45, 0.05, 0.55], [0.9, 0.2, 0.2], [1.0, 0.85, 0.2]])
    scaled = x.clamp(0, 1) * (len(stops) - 1)
    low = scaled.floor().long().clamp(max=len(stops) - 2)
    t = (scaled - low)[..., None]
    return stops[low] * (1 - t) + stops[low + 1] * t


def safe_prefix(prefix: str) -> str:
    node, field = "JointAttentionMaps", "filename_prefix"
    cleaned = prefix.strip() if isinstance(prefix, str) else ""
    parts = cleaned.replace("\\", "/").split("/")
    if os.path.isabs(cleaned) or ".." in parts or "\\" in cleaned or not _PREFIX.match(cleaned):
        raise node_error(node, field, f"{_shown(prefix)} must be a relative name inside the output folder (letters, "
                         "digits, _ - . / and spaces; no '..', no absolute paths), e.g. 'attention/my_run'")
    if len(cleaned) > MAX_PREFIX_CHARS or len(parts) > MAX_PREFIX_DEPTH or any(len(p) > MAX_PREFIX_PART for p in parts) \
            or any(not p.strip() for p in parts):
        raise node_error(node, field, f"{_shown(prefix)} is too long: at most {MAX_PREFIX_CHARS} characters, "
                         f"{MAX_PREFIX_DEPTH} folders and {MAX_PREFIX_PART} characters per name, no empty folder names")
    return cleaned


def _shown(value, limit: int = 60) -> str:
    """A user value for an error message, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


class JointAttentionMaps(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="JointAttentionMaps",
            display_name=DISPLAY_NAMES["JointAttentionMaps"],
            category=f"{CATEGORY}/maps",
            description="Turns a capture into per-word heatmaps and masks, and can save PNGs plus the raw maps "
                        "(.safetensors).",
            inputs=[
                Capture.Input("capture", tooltip="From the Attention Capture node."),
                io.Latent.Input("samples", tooltip="The sampler's output, so the maps are read after sampling."),
                io.String.Input("words", default="", tooltip="Comma-separated words (or #position) to show; empty = "
                                "all words."),
                io.String.Input("filename_prefix", default="", tooltip="Save under the output folder with this prefix; "
                                "empty = do not save."),
                io.Clip.Input("clip", optional=True, tooltip="The text encoder of the prompt, to label tokens (T5 for "
                              "FLUX)."),
                io.String.Input("prompt", multiline=True, default="", optional=True,
                                tooltip="The positive prompt, to label tokens."),
                io.Image.Input("image", optional=True, tooltip="Overlay the heatmaps on this image (e.g. the decoded "
                               "result)."),
            ],
            outputs=[
                io.Image.Output("heatmaps", display_name="heatmaps", tooltip="One heatmap per word (over the image "
                                "when given)."),
                io.Mask.Output("masks", display_name="masks", tooltip="Per-word maps scaled to 0-1."),
                io.String.Output("info", display_name="info", tooltip="Words, tokens, blocks and steps used; region "
                                 "leakage when regions were active."),
            ],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, filename_prefix=None, words=None, prompt=None):
        # Checked when the prompt is queued, so a bad name does not cost a sampling run. Only the inputs it
        # checks are taken: ComfyUI files a failed check once under each input the function receives.
        try:
            if isinstance(filename_prefix, str) and filename_prefix.strip():
                safe_prefix(filename_prefix)
            if isinstance(words, str):
                _wanted(words, "JointAttentionMaps")
            if isinstance(prompt, str):
                _labelling_prompt(prompt, "JointAttentionMaps")
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, capture, samples, words, filename_prefix, clip=None, prompt="", image=None) -> io.NodeOutput:
        node = "JointAttentionMaps"
        result = capture.take() if isinstance(capture, CaptureHandle) else None
        if result is None and getattr(capture, "read", False):
            raise node_error(node, "capture", "the sampler ran, but its maps were already read by an Attention Maps "
                             "node (another one on this capture, or this one in an earlier prompt whose sampler result "
                             "ComfyUI now reuses), and the sampler has not run since: one capture feeds one Attention "
                             "Maps node per run. Name all the words you want in one node's 'words', give each Attention "
                             "Maps node an Attention Capture of its own, or change a sampler input (e.g. the seed) to "
                             "sample again")
        if result is None:
            raise node_error(node, "capture", "no attention was recorded: the sampler using the capture's model did not "
                             "run in this prompt (ComfyUI reused its cached result). Change a sampler input (e.g. the "
                             "seed) or run with the cache cleared")
        if not result.get("recorded"):
            raise node_error(node, "capture", "the sampler ran but recorded nothing: no step fell inside the capture's "
                             "start/end_percent window, or every captured block was skipped (Text Scale 'skip'). "
                             "Widen the window or choose blocks that run")
        if filename_prefix.strip():
            safe_prefix(filename_prefix)
        maps = result["maps"]  # [N_img, N_txt]
        if maps.shape[1] == 0 and result.get("concept_maps") is None:  # ConceptAttention alone records no word maps
            raise node_error(node, "capture", "the sampler ran but no attention call reached this capture's text "
                             "columns; connect this Attention Maps node to the capture of the model the sampler used")
        overlay = rgb_image(node, "image", image) if image is not None else None
        frames = int(result.get("frames") or 1)
        if frames > 1:  # a video: one map over the whole clip, each token cell averaged over the frames
            maps = maps.reshape(frames, -1, maps.shape[1]).mean(dim=0)
            if result.get("concept_maps") is not None:
                result = {**result, "concept_maps": result["concept_maps"].reshape(
                    result["concept_maps"].shape[0], frames, -1).mean(dim=1)}
        n_img = maps.shape[0]
        rows, cols = _grid(node, samples, result, n_img)
        labels, token_names = _labels(clip, _labelling_prompt(prompt, node), result, node)
        concept_maps = result.get("concept_maps")
        if concept_maps is not None and not words.strip():
            # ConceptAttention segmentation: one map per concept.
            chosen = [(f"concept {name}", []) for name in result["concept_names"]]
            raw = concept_maps.reshape(-1, rows, cols)
        else:
            chosen = _select(labels, words, node, maps.shape[1], no_word_labels(result.get("family", "")))
            if not chosen:  # only a prompt without any word to label leaves nothing to show
                raise node_error(node, "prompt", f"{_shown(prompt)} has no word to label the captured tokens with; "
                                 "give the positive prompt as it was encoded, or leave 'prompt' (and 'clip') empty for "
                                 "one map of the whole prompt")
            raw = torch.stack([maps[:, positions].sum(dim=1).reshape(rows, cols) for _, positions in chosen])
        lo = raw.flatten(1).min(dim=1).values[:, None, None]
        hi = raw.flatten(1).max(dim=1).values[:, None, None]
        norm = (raw - lo) / (hi - lo).clamp_min(1e-12)
        height, width = (overlay.shape[0], overlay.shape[1]) if overlay is not None else (rows * 16, cols * 16)
        height, width = map_size(len(chosen), height, width)
        if overlay is not None and (height, width) != tuple(overlay.shape[:2]):
            log.info("[joint_attention] %s: %d maps over a %dx%d image would exceed %d pixels; made at %dx%d",
                     node, len(chosen), overlay.shape[1], overlay.shape[0], MAX_MAP_PIXELS, width, height)
            overlay = F.interpolate(overlay.permute(2, 0, 1)[None], size=(height, width), mode="bilinear",
                                    align_corners=False, antialias=True)[0].permute(1, 2, 0)
        # Made map by map into the outputs: peak memory is the outputs and one map's scratch.
        masks = torch.empty(len(chosen), height, width)
        heat = torch.empty(len(chosen), height, width, 3)
        for i in range(len(chosen)):
            masks[i] = F.interpolate(norm[i][None, None], size=(height, width), mode="bilinear",
                                     align_corners=False)[0, 0].clamp(0, 1)
            heat[i] = colormap(masks[i])
            if overlay is not None:
                heat[i].mul_(0.55).add_(overlay, alpha=0.45)
        info = _info(result, chosen)
        ui = {"text": [info]}
        if filename_prefix.strip():
            ui["images"] = _save(safe_prefix(filename_prefix), heat, maps, rows, cols, chosen, token_names, result)
        return io.NodeOutput(heat, masks, info, ui=ui)


def map_size(n_maps: int, height: int, width: int) -> tuple:
    """(height, width) of the maps: the overlay's size, scaled down (aspect kept) so that all maps together hold
    at most MAX_MAP_PIXELS pixels (each map is a heatmap of 3 floats and a mask of 1 float per pixel)."""
    total = max(n_maps, 1) * height * width
    if total <= MAX_MAP_PIXELS:
        return height, width
    factor = (MAX_MAP_PIXELS / total) ** 0.5
    return max(1, int(height * factor)), max(1, int(width * factor))


# -- labels ----------------------------------------------------------------

def _labels(clip, prompt, result, node):
    """([(label, positions)] words of the base prompt, then each region text; a name per text column)."""
    n_txt, n_cols = result["n_txt"], result["maps"].shape[1]
    names = [f"#{i}" for i in range(n_cols)]
    if clip is not None and prompt.strip():
        try:
            tokens = context_tokens(clip, prompt, n_txt, result.get("family", ""))
        except UnplacedLabels as exc:
            raise node_error(node, "prompt", str(exc)) from None
        # No labels at all (a family whose tokens cannot be read as words: Lens): the base prompt as one map. A prompt
        # whose tokens hold no word (":") is the user's mistake, named below.
        labels = words_of(tokens) if tokens else [("base prompt", list(range(n_txt)))]
        for position, text, _ in tokens:
            names[position] = text
    elif clip is not None or prompt.strip():
        raise node_error(node, "clip" if clip is None else "prompt", "labelling needs both 'clip' and 'prompt'")
    else:
        labels = [("base prompt", list(range(n_txt)))]
    start = n_txt
    for r, length in enumerate(result["region_lens"]):
        labels.append((f"region {r + 1}", list(range(start, start + length))))
        for t in range(length):
            if start + t < n_cols:
                names[start + t] = f"region {r + 1} token {t}"
        start += length
    labels = [(label, [p for p in positions if p < n_cols]) for label, positions in labels]
    return [entry for entry in labels if entry[1]], names


def _select(labels, words, node, n_cols, no_words=""):
    wanted = _wanted(words, node)
    if not wanted:
        if len(labels) > MAX_MAPS:
            log.warning("[joint_attention] %s: %d words; showing the first %d (name words to choose others)",
                        node, len(labels), MAX_MAPS)
        return labels[:MAX_MAPS]
    chosen, seen = [], set()
    for w in wanted:
        if w.startswith("#"):
            position = int(w[1:])
            if position >= n_cols:
                raise node_error(node, "words", f"{w!r} is past the captured text: positions run from #0 to "
                                 f"#{n_cols - 1}")
            hits = [(f"#{position}", [position])]
        else:
            hits = [entry for entry in labels if entry[0].lower() == w.lower()]
        if not hits and no_words:  # Lens: the base prompt is one map, positions go by number
            raise node_error(node, "words", f"{_shown(w)}: {no_words}. Name text positions as #0 to #{n_cols - 1}, "
                             "or leave 'words' empty for the base prompt as one map (and one per region text)")
        if not hits:
            known = ", ".join(label for label, _ in labels[:40])
            raise node_error(node, "words", f"{_shown(w)} is not among the prompt's words ({known}); write a word, "
                             "or #position")
        for label, positions in hits:
            key = (label.lower(), tuple(positions))
            if key not in seen:  # a word named twice is one map
                seen.add(key)
                chosen.append((label, positions))
    if len(chosen) > MAX_MAPS:
        raise node_error(node, "words", f"{len(chosen)} maps asked for; at most {MAX_MAPS} per node")
    return chosen

# -- info and files ----------------------------------------------------------------

def _info(result, chosen):
    lines = [f"blocks: {result['blocks']}", f"steps: {result['steps']}"]
    if result.get("concept_maps") is not None:
        lines.append(f"concepts: {result['concept_names']} (ConceptAttention, double blocks {result['concept_blocks']})")
    lines += [
             "words: " + "; ".join(f"{label} {positions}" for label, positions in chosen)]
    for r, leak in enumerate(region_leakage(result)):
        lines.append(f"region {r + 1} leakage: {leak:.4f} (share of its text's attention outside its mask)")
    return "\n".join(lines)


def _save(prefix, heat, maps, rows, cols, chosen, token_names, result):
    import folder_paths
    from safetensors.torch import save_file

    out_dir = folder_paths.get_output_directory()
    try:
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, out_dir, heat.shape[2], heat.shape[1])
    except Exception as exc:  # ComfyUI refuses paths outside the output folder
        raise node_error("JointAttentionMaps", "filename_prefix", str(exc)) from None
    real_out = os.path.realpath(out_dir)
    if os.path.commonpath([os.path.realpath(folder), real_out]) != real_out:
        raise node_error("JointAttentionMaps", "filename_prefix", "resolves outside the output folder")
    os.makedirs(folder, exist_ok=True)
    import numpy as np
    from PIL import Image

    saved = []
    for i, (label, _) in enumerate(chosen):
        safe = re.sub(r"[^A-Za-z0-9_-]+", "_", label)[:40] or "token"
        file = f"{name}_{counter:05}_{i:02}_{safe}.png"
        Image.fromarray((heat[i].numpy() * 255).astype(np.uint8)).save(os.path.join(folder, file))
        saved.append({"filename": file, "subfolder": subfolder, "type": "output"})
    raw = maps.t().reshape(maps.shape[1], rows, cols).contiguous()
    metadata = {"words": json.dumps([(label, positions) for label, positions in chosen]),
                "blocks": json.dumps(result["blocks"]), "steps": str(result["steps"]),
                "layout": json.dumps({"n_txt": result["n_txt"], "region_lens": list(result["region_lens"])}),
                "tokens": json.dumps(token_names)}
    save_file({"maps": raw}, os.path.join(folder, f"{name}_{counter:05}_maps.safetensors"), metadata=metadata)
    return saved


def _grid(node, samples, result, n_img):
    """The image token grid the maps are over, as the capture recorded it; the connected latent must be the one it
    came from (its height and width)."""
    h, w = samples["samples"].shape[-2], samples["samples"].shape[-1]
    rows, cols = result.get("grid") or (0, 0)
    if rows * cols != n_img or tuple(result.get("latent_hw") or ()) != (h, w):
        raise node_error(node, "samples", f"the latent ({h}x{w}) is not the one the capture recorded "
                         f"({'x'.join(map(str, result.get('latent_hw') or ('?', '?')))}, {n_img} image tokens); "
                         "connect the output of the sampler that used the capture's model")
    return rows, cols


def region_leakage(result) -> list:
    """Per region: share of image-to-region-text attention that falls outside the region's mask."""
    masks = result.get("region_masks")
    if masks is None:
        return []
    maps = result["maps"]
    out, start = [], result["n_txt"]
    for r, length in enumerate(result["region_lens"]):
        mass = maps[:, start:start + length].sum(dim=1)
        start += length
        total = float(mass.sum())
        out.append(float(mass[masks[r] == 0].sum()) / total if total > 0 else 0.0)
    return out


NODES = [JointAttentionCapture, JointAttentionMaps]
