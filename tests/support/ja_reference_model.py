"""An independent, test-only implementation of the features on a real ComfyUI model.

It uses its own hooks (APPLY_MODEL wrapper, block replace patches, attention override)
and the dense softmax references, sharing no code with the pack's dispatcher, so the
pack's plumbing (layouts, rows, block numbering, windows) is checked, not just its math.
"""
from __future__ import annotations

import math
from functools import partial

import comfy.patcher_extension
import torch

from ja_reference import dense_attention, dense_bias

KEY = "ja_reference"


class ReferenceConfig:
    def __init__(self, regions=(), masks=None, strengths=(), base_ratio=0.0, sigma_start=float("inf"), sigma_end=0.0,
                 double=(), single=(), image_attention="restricted", global_prompt="background",
                 gamma=1.0, gamma_threshold=float("inf"), gamma_rows="both", gamma_double=(), gamma_single=(),
                 capture_double=(), capture_single=(), capture_start=float("inf"), capture_end=0.0, text_edit=None):
        self.regions = list(regions)  # [T, C] tensors
        self.masks = masks  # [n, N_img] token masks
        self.strengths = list(strengths)
        self.base_ratio = base_ratio
        self.sigma_start, self.sigma_end = sigma_start, sigma_end
        self.double, self.single = set(double), set(single)
        self.image_attention, self.global_prompt = image_attention, global_prompt
        self.gamma, self.gamma_threshold, self.gamma_rows = gamma, gamma_threshold, gamma_rows
        self.gamma_double, self.gamma_single = set(gamma_double), set(gamma_single)
        self.capture_double, self.capture_single = set(capture_double), set(capture_single)
        self.capture_start, self.capture_end = capture_start, capture_end
        # NextDiT / HiDream only: callable(block number, joint sequence (HiDream: the text stream), text rows) -> the
        # sequence the block gets (None: skip it)
        self.text_edit = text_edit
        self.capture_sum = None  # [N_img, N_text] float64: head-mean probabilities summed over cond rows and calls
        self.capture_counts = None

    def captured_maps(self):
        return (self.capture_sum / self.capture_counts.clamp_min(1)).float()

    def _record(self, probs, layout):
        """probs [1,H,L,L] effective weights of one cond row: image rows on text columns."""
        block = probs[0].mean(0)[layout.img, : layout.n_context]
        if self.capture_sum is None:
            self.capture_sum = torch.zeros(layout.n_img, 0, dtype=torch.float64)
            self.capture_counts = torch.zeros(0, dtype=torch.float64)
        if block.shape[1] > self.capture_sum.shape[1]:
            extra = block.shape[1] - self.capture_sum.shape[1]
            self.capture_sum = torch.cat([self.capture_sum, torch.zeros(layout.n_img, extra, dtype=torch.float64)], 1)
            self.capture_counts = torch.cat([self.capture_counts, torch.zeros(extra, dtype=torch.float64)])
        self.capture_sum[:, : block.shape[1]] += block
        self.capture_counts[: block.shape[1]] += 1


def _sequential_prompt_alone_rope(dm, pe, info):
    """Chroma Radiance's rope table (sequential text ids: position i on axis 0, zeros elsewhere) with every text
    numbered as the prompt alone. Text rows are made here from their ids; image rows are the host's."""
    within = [torch.arange(info["n_txt"])] + [torch.arange(n) for n in info["lens"]]
    positions = torch.cat(within).to(pe.device, torch.float32)
    ids = torch.zeros(pe.shape[0], positions.shape[0], 3, device=pe.device, dtype=torch.float32)
    ids[..., 0] = positions
    text = dm.pe_embedder(ids).to(pe.dtype)
    return torch.cat([text, pe[:, :, positions.shape[0]:]], dim=2)


def _qwen_prompt_alone_rope(dm, pe, info):
    """Qwen-Image's rope table with every text numbered as the prompt alone: the QwenImage pipeline numbers text
    tokens txt_start, txt_start + 1, ... on all three axes, txt_start = max(token rows, token cols) // 2. Text rows
    are made here from their ids; image and reference rows are the host's."""
    rows, cols = info["grid"]
    start = max(rows // 2, cols // 2)
    within = [torch.arange(info["n_txt"])] + [torch.arange(n) for n in info["lens"]]
    ids = (torch.cat(within) + start).to(pe.device, torch.float32)
    ids = ids.reshape(1, -1, 1).repeat(pe.shape[0], 1, 3)
    text = dm.pe_embedder(ids).to(pe.dtype)
    n_ctx = ids.shape[1]
    return torch.cat([text, pe[:, :, n_ctx:]], dim=2)


def _lens_prompt_alone_rope(dm, pe, info):
    """Lens's rope table ([image ; text] rows) with every text numbered as the prompt alone: Lens numbers text tokens
    max(rows // 2, cols // 2) + i on all three axes. Text rows are made here from their ids; image rows are the
    host's."""
    rows, cols = info["grid"]
    start = max(rows // 2, cols // 2)
    within = [torch.arange(info["n_txt"])] + [torch.arange(n) for n in info["lens"]]
    ids = (torch.cat(within) + start).to(pe.device, torch.float32).reshape(1, -1, 1).repeat(pe.shape[0], 1, 3)
    text = dm.pos_embed(ids).to(pe.dtype)
    return torch.cat([pe[:, :, :pe.shape[2] - ids.shape[1]], text], dim=2)


def _texts_numbered_alone(info, axes, args):
    """FLUX `post_input`: every region text's positions on the text axes numbered 0, 1, ... as the prompt alone."""
    txt_ids = args["txt_ids"].clone()
    start = info["n_txt"]
    for length in info["lens"]:
        for axis in axes:
            txt_ids[:, start:start + length, axis] = torch.arange(length, dtype=txt_ids.dtype, device=txt_ids.device)
        start += length
    return {**args, "txt_ids": txt_ids}


def _with_region_registers(registers, args, info):
    """AuraFlow's first block: each region text's leading rows set to the model's register tokens."""
    key = "txt" if args.get("txt") is not None else "img"
    stream = args[key].clone()
    start = info["n_txt"]
    for length in info["lens"]:
        stream[:, start:start + registers.shape[1]] = registers[0].to(stream)
        start += length
    return {key: stream}


def install_reference(model, config: ReferenceConfig, n_double: int, n_single: int):
    m = model.clone()

    def wrapper(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        opts = dict(transformer_options)
        sigma = float(transformer_options["sigmas"].max())
        in_window = bool(config.regions) and config.sigma_end <= sigma <= config.sigma_start
        info = {"n_txt": c_crossattn.shape[1], "sigma": sigma, "lens": (), "rows": []}
        chunks = transformer_options.get("cond_or_uncond", [0])
        per = x.shape[0] // len(chunks)
        info["rows"] = [c for c in chunks for _ in range(per)]
        if registers is not None:  # AuraFlow: its registers lead the text stream
            info["n_txt"] += registers.shape[1]
        if in_window and own_forward:  # the reference forward below lays out each region text alone
            info["regions"] = config.regions
        elif hunyuan:
            # HunyuanImage: the prompt's byT5 glyph tokens join its text after the token refiner; region texts are
            # refined here, each alone (as the model's txt_in refines a prompt), and join the stream at block 0.
            glyphs = kwargs.get("txt_byt5")
            info["n_txt"] += glyphs.shape[1] if glyphs is not None and dm.byt5_in is not None else 0
            if in_window:
                steps = executor.class_obj.model_sampling.timestep(t).float()
                info["lens"] = tuple(r.shape[0] for r in config.regions)
                info["refined"] = torch.cat([dm.txt_in(r[None].expand(x.shape[0], -1, -1).to(c_crossattn), steps, None)
                                             for r in config.regions], dim=1)
                if getattr(dm, "cond_type_embedding", None) is not None:  # HunyuanVideo 1.5: text tokens are type 0
                    kind = torch.zeros(info["refined"].shape[:2], dtype=torch.long, device=info["refined"].device)
                    info["refined"] = info["refined"] + dm.cond_type_embedding(kind).to(info["refined"])
        elif in_window and registers is not None:
            # As the prompt alone, each region text reads [registers ; text]: zero rows here (the text input layer
            # has no bias), the model's registers put there in the first block.
            n_reg = registers.shape[1]
            parts = [torch.cat([torch.zeros(n_reg, r.shape[1], dtype=r.dtype), r.cpu()]) for r in config.regions]
            info["lens"] = tuple(p.shape[0] for p in parts)
            extra = torch.cat(parts).to(c_crossattn)
            c_crossattn = torch.cat([c_crossattn, extra[None].expand(x.shape[0], -1, -1)], dim=1)
        elif in_window:
            extra = torch.cat(config.regions).to(c_crossattn)
            info["lens"] = tuple(r.shape[0] for r in config.regions)
            c_crossattn = torch.cat([c_crossattn, extra[None].expand(x.shape[0], -1, -1)], dim=1)
        patch = getattr(executor.class_obj.diffusion_model, "patch_size", 2)
        if lens_rope:
            patch = 1  # Lens's blocks take the latent cells themselves
        elif isinstance(patch, (list, tuple)):
            patch = patch[-1]  # HunyuanVideo, JoyImage: (frames, rows, cols)
        rows, cols = -(-x.shape[-2] // patch), -(-x.shape[-1] // patch)
        info["grid"] = (rows, cols)
        opts[KEY] = info
        if info["lens"] and longcat:
            # LongCat-Image puts the image after the text by shifting its rope positions by the context's length (its
            # own _apply_model); with every text read as the prompt alone, the image sits after the prompt.
            shift = float(info["n_txt"])
            opts["rope_options"] = {"shift_t": 1.0, "shift_y": shift, "shift_x": shift, **(opts.get("rope_options") or {})}
        text_axes = list(getattr(getattr(executor.class_obj.diffusion_model, "params", None), "txt_ids_dims", ()) or ())
        if info["lens"] and text_axes:  # FLUX.2: text positions count along these axes; each text from 0 alone
            patches = dict(opts.get("patches") or {})
            patches["post_input"] = list(patches.get("post_input", ())) + [partial(_texts_numbered_alone, info,
                                                                                    text_axes)]
            opts["patches"] = patches
        return executor(x, t, c_concat, c_crossattn, control, opts, **kwargs)

    nextdit = type(model.model).__name__ == "Lumina2"
    longcat = type(model.model).__name__ == "LongCatImage"
    # HunyuanImage 2.1 (and its refiner) and HunyuanVideo 1.0 / 1.5: the same model code (token refiner, double
    # and single blocks).
    hunyuan = type(model.model).__name__ in ("HunyuanImage21", "HunyuanImage21Refiner", "HunyuanVideo",
                                             "HunyuanVideoI2V", "HunyuanVideoSkyreelsI2V", "HunyuanVideo15",
                                             "HunyuanVideo15_SR_Distilled")
    dm = model.model.diffusion_model
    hidream = type(model.model).__name__ == "HiDream"
    krea2 = type(model.model).__name__ == "Krea2"
    ideogram4 = type(model.model).__name__ == "Ideogram4"
    omnigen2 = type(model.model).__name__ in ("Omnigen2", "Boogu")
    own_forward = nextdit or hidream or krea2 or ideogram4 or omnigen2
    registers = getattr(model.model.diffusion_model, "register_tokens", None)
    m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.APPLY_MODEL, KEY, wrapper)
    if hidream:
        from ja_reference_hidream import reference_forward as hidream_forward

        def forward(executor, x, t, y, context, llama, image_cond=None, control=None, transformer_options=None):
            info = transformer_options[KEY]
            return hidream_forward(executor.class_obj, x, t, y, context, llama, info.get("regions", ()), info,
                                   transformer_options, config.text_edit)

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, forward)
    if omnigen2:  # its forward takes no DIFFUSION_MODEL wrappers: the reference forward replaces it on the clone
        import ja_reference_omnigen2

        omnigen2_forward = (ja_reference_omnigen2.reference_forward_boogu if type(model.model).__name__ == "Boogu"
                            else ja_reference_omnigen2.reference_forward)

        dm_own = model.model.diffusion_model

        def forward_omnigen2(x, timesteps, context, num_tokens, ref_latents=None, attention_mask=None,
                             transformer_options={}, **kwargs):  # noqa: B006 (the host's signature)
            info = transformer_options[KEY]
            return omnigen2_forward(dm_own, x, timesteps, context, info.get("regions", ()), info,
                                    transformer_options, config.text_edit)

        m.add_object_patch("diffusion_model.forward", forward_omnigen2)
    if nextdit:
        from ja_reference_nextdit import reference_forward

        def forward(executor, x, timesteps, context, num_tokens, attention_mask=None, **kwargs):
            options = kwargs["transformer_options"]
            info = options[KEY]
            return reference_forward(executor.class_obj, x, timesteps, context, info.get("regions", ()), info,
                                     options, config.text_edit)

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, forward)
    if krea2:
        from ja_reference_krea2 import reference_forward as krea2_forward

        def krea2_wrapper(executor, x, timesteps, context, attention_mask=None, ref_latents=None,
                          transformer_options=None, **kwargs):
            info = transformer_options[KEY]
            method = kwargs.get("ref_latents_method", executor.class_obj.default_ref_method)
            return krea2_forward(executor.class_obj, x, timesteps, context, info.get("regions", ()), info,
                                 transformer_options, ref_latents, method, config.text_edit)

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, krea2_wrapper)
    if ideogram4:
        from ja_reference_ideogram4 import reference_forward as ideogram4_forward

        def ideogram4_wrapper(executor, x, timesteps, context=None, attention_mask=None, transformer_options=None,
                              **kwargs):
            info = transformer_options.get(KEY)
            if context is None or attention_mask is not None or info is None:
                return executor(x, timesteps, context, attention_mask, transformer_options, **kwargs)
            return ideogram4_forward(executor.class_obj, x, timesteps, context, info.get("regions", ()), info,
                                     transformer_options, config.text_edit)

        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, KEY, ideogram4_wrapper)

    dm = model.model.diffusion_model
    qwen_rope = type(model.model).__name__ == "QwenImage"
    # 0.3.75's HunyuanVideo blocks attend over [image ; text] (flipped double blocks, single stream image first).
    hunyuan_image_first = hunyuan and bool(getattr(dm.double_blocks[0], "flipped_img_txt", False))
    lens_rope = type(model.model).__name__ == "Lens"
    # Models whose joint calls are [image ; references ; text]: the reference reorders them to [text ; image ; ...].
    image_first = type(model.model).__name__ in ("Lens", "JoyImage")
    # Chroma Radiance with sequential text ids (0.33) numbers text along rope axis 0 inside its forward.
    sequential_rope = bool(getattr(getattr(dm, "params", None), "use_sequential_txt_ids", False))

    def block_patch(kind, index):
        def patch(args, extra):
            args = dict(args)
            info = args["transformer_options"].get(KEY)
            if qwen_rope and info and info["lens"]:
                args["pe"] = _qwen_prompt_alone_rope(dm, args["pe"], info)
            if lens_rope and info and info["lens"]:
                args["pe"] = _lens_prompt_alone_rope(dm, args["pe"], info)
            if sequential_rope and info and info["lens"]:
                args["pe"] = _sequential_prompt_alone_rope(dm, args["pe"], info)
            if hunyuan and info and info.get("refined") is not None:
                if (kind, index) == ("double", 0):
                    args["txt"] = torch.cat([args["txt"], info["refined"].to(args["txt"])], dim=1)
                # Region texts' rope rows: text position 0 on both axes, as every text token of this model.
                pe = args["pe"]
                # rope axes: 2 (HunyuanImage 2.1), 3 (its refiner and video: frames, rows, cols)
                n_axes = len(dm.pe_embedder.axes_dim)
                zero = dm.pe_embedder(torch.zeros(1, sum(info["lens"]), n_axes, device=pe.device)).to(pe)
                zero = zero.expand(pe.shape[0], *zero.shape[1:])
                n_txt = info["n_txt"]
                args["pe"] = (torch.cat([pe, zero], dim=2) if hunyuan_image_first
                              else torch.cat([pe[:, :, :n_txt], zero, pe[:, :, n_txt:]], dim=2))
            if registers is not None and info and info["lens"] and index == 0 and (kind == "double" or not n_double):
                args.update(_with_region_registers(registers, args, info))
            args["transformer_options"] = {**args["transformer_options"], KEY + "_block": (kind, index)}
            return extra["original_block"](args)
        return patch

    for i in range(n_double):
        m.set_model_patch_replace(block_patch("double", i), "dit", "double_block", i)
    for i in range(n_single):
        m.set_model_patch_replace(block_patch("single", i), "dit", "single_block", i)

    def override(func, *args, **kwargs):
        opts = kwargs["transformer_options"]
        info = opts.get(KEY)
        kind, index = opts.get(KEY + "_block", (None, None))
        if kind is None:  # outside the joint blocks (NextDiT's caption and noise refiners)
            return func(*args, **kwargs)
        q, k, v = args[0], args[1], args[2]
        if kwargs.get("skip_reshape"):
            heads = q.shape[1]
            if k.shape[1] != heads:  # grouped-query attention (OmniGen2): key / value head j serves query heads
                group = heads // k.shape[1]  # j * group .. (j + 1) * group - 1
                k, v = k[:, torch.arange(heads) // group], v[:, torch.arange(heads) // group]
        else:
            heads = kwargs["heads"] if "heads" in kwargs else args[3]  # HiDream passes it as the 4th argument
            b = q.shape[0]
            q, k, v = (t.reshape(b, t.shape[1], heads, -1).transpose(1, 2) for t in (q, k, v))
        from joint_attention_pack.attention.layout import TokenLayout

        n_img = info["grid"][0] * info["grid"][1]
        first = n_img if info.get("image_first") else 0  # HiDream's calls are [image ; text]
        if first:
            q, k, v = (torch.cat([t[:, :, first:], t[:, :, :first]], dim=2) for t in (q, k, v))
        n_ctx = info["n_txt"] + sum(info["lens"])
        masks = config.masks.cpu() if config.masks is not None else None
        if q.shape[2] < n_ctx + n_img:  # image-only attn2 call
            return func(*args, **kwargs)
        mask = kwargs.get("mask")
        if mask is not None:  # Lens's joint mask from a text mask of all ones: it masks nothing
            assert not mask.any(), "the reference runs prompts without text padding"
        visual = q.shape[2] - n_ctx if image_first else 0
        if visual:
            q, k, v = (torch.cat([t[:, :, visual:], t[:, :, :visual]], dim=2) for t in (q, k, v))
        # The keys' layout; queries are its first rows (FLUX KV Cache: reference keys cached, their queries dropped).
        layout = TokenLayout(info["n_txt"], n_img, k.shape[2] - n_ctx - n_img, info["lens"], info["grid"])
        n_q = q.shape[2]
        device = q.device
        q, k, v = q.cpu(), k.cpu(), v.cpu()  # the reference runs in float64 on the CPU
        if hunyuan_image_first:  # [image ; text] -> [text ; image]
            q, k, v = (torch.cat([t[:, :, -n_ctx:], t[:, :, :-n_ctx]], dim=2) for t in (q, k, v))
        scale = 1.0 / math.sqrt(q.shape[-1])
        out = torch.empty(q.shape, dtype=torch.float64)
        selected = index in (config.double if kind == "double" else config.single)
        for row, row_kind in enumerate(info["rows"]):
            gamma_on = (config.gamma != 1.0 and info["sigma"] >= config.gamma_threshold
                        and config.gamma_rows in ("both", "cond" if row_kind == 0 else "uncond")
                        and index in (config.gamma_double if kind == "double" else config.gamma_single))
            gamma = config.gamma if gamma_on else 1.0
            base_ratio = 0.0
            if not info["lens"]:
                bias = dense_bias(layout)
            elif row_kind != 0:
                bias = dense_bias(layout, isolate_regions=True)
            elif selected:
                bias = dense_bias(layout, masks, config.strengths, config.image_attention, config.global_prompt)
                base_ratio = config.base_ratio
            else:
                bias = dense_bias(layout)
            o, probs = dense_attention(q[row:row + 1], k[row:row + 1], v[row:row + 1], bias[:n_q], scale, gamma, layout,
                                       base_ratio)
            out[row] = o[0]
            captured = index in (config.capture_double if kind == "double" else config.capture_single)
            if row_kind == 0 and captured and config.capture_end <= info["sigma"] <= config.capture_start:
                config._record(probs, layout)
        out = out.to(device=device, dtype=q.dtype)
        if hunyuan_image_first or visual:  # back to [image ; (references ;) text]
            out = torch.cat([out[:, :, n_ctx:], out[:, :, :n_ctx]], dim=2)
        if first:
            out = torch.cat([out[:, :, -first:], out[:, :, :-first]], dim=2)
        b, h, length, d = out.shape
        return out.transpose(1, 2).reshape(b, length, h * d)

    # set_model_patch_replace replaces the options dicts: read them fresh.
    m.model_options["transformer_options"]["optimized_attention_override"] = override
    return m
