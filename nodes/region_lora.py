"""Region LoRA: a LoRA that acts on one region's tokens only, in the same model pass as the regions."""
from __future__ import annotations

from dataclasses import replace

from comfy_api.latest import io

from ..attention.blocks import BlockSelectionError, parse_blocks
from ..integration.region_lora import RegionLoRA
from .common import CATEGORY, DISPLAY_NAMES, block_range_inputs, finite, node_error, percent_input
from .regional import Regions

NODE = "JointAttentionRegionLoRA"
_ANY_COUNT = 10 ** 6  # block numbers have at most 6 digits (attention/blocks.py): only the form is checked here


def _lora_names() -> list:
    import folder_paths

    return folder_paths.get_filename_list("loras")


def lora_path(node: str, input_name: str, lora_name: str, where: str = "") -> str:
    """The full path of a LoRA of the loras folder, or an error naming the node and input (`where`: which part of
    the input, e.g. the canvas region)."""
    import folder_paths

    path = folder_paths.get_full_path("loras", lora_name)
    if path is None:
        raise node_error(node, input_name, f"{where}{lora_name!r} is not in the loras folder; choose a listed LoRA")
    return path


def with_lora(region, lora: RegionLoRA):
    """The region with `lora` added to its adapters: how Region LoRA and the Region Canvas give a region a LoRA."""
    return replace(region, adapters=region.adapters + (lora,))


class JointAttentionRegionLoRA(io.ComfyNode):
    """Gives region `index` of a REGIONS chain (Region nodes or the Region Canvas) a LoRA."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id=NODE,
            display_name=DISPLAY_NAMES[NODE],
            category=f"{CATEGORY}/regional",
            description="A LoRA on one region: it acts on that region's image tokens (weighted by the region's mask "
                        "and strength) and on its prompt's tokens, nowhere else, in the same pass. Positive prompt "
                        "rows only, as core's hook LoRAs with CFG.",
            inputs=[
                Regions.Input("regions", tooltip="Regions from Region nodes or the Region Canvas."),
                io.Int.Input("index", default=1, min=1, max=128, tooltip="Which region, from 1 (the order of the chain "
                             "or of the canvas's regions)."),
                io.Combo.Input("lora_name", options=_lora_names(), tooltip="A LoRA from the loras folder, for the "
                               "diffusion model (its text-encoder keys, if any, are not used)."),
                io.Float.Input("strength", default=1.0, min=-10.0, max=10.0, step=0.01,
                               tooltip="Multiplies the LoRA's effect on the region (0: the region without it)."),
                percent_input("start_percent", 0.0, "Where in the schedule the LoRA starts to act (its own window, "
                              "apart from Apply Regional Attention's: a character LoRA usually acts on every step)."),
                percent_input("end_percent", 1.0, "Where in the schedule it stops."),
                *block_range_inputs(" The LoRA acts in these blocks only (its own choice, apart from Apply Regional "
                                    "Attention's)."),
            ],
            outputs=[Regions.Output("regions_out", display_name="regions", tooltip="The regions, region `index` "
                                    "with the LoRA; connect to Apply Regional Attention.")],
        )

    @classmethod
    def execute(cls, regions, index, lora_name, strength, start_percent, end_percent, double_blocks="all",
                single_blocks="all") -> io.NodeOutput:
        regions = tuple(regions or ())
        if not 1 <= int(index) <= len(regions):
            raise node_error(NODE, "index", f"is {index} but the regions hold {len(regions)}; choose 1 to "
                             f"{max(len(regions), 1)} (regions with an empty mask or strength 0 are dropped)")
        path = lora_path(NODE, "lora_name", lora_name)
        strength = finite(NODE, "strength", strength, -10.0, 10.0)
        start = finite(NODE, "start_percent", start_percent, 0.0, 1.0)
        end = finite(NODE, "end_percent", end_percent, 0.0, 1.0)
        if end < start:
            raise node_error(NODE, "end_percent", f"must not be below start_percent ({end} < {start})")
        for name, text in (("double_blocks", double_blocks), ("single_blocks", single_blocks)):
            try:  # the text's form here; the block numbers against the model at Apply Regional Attention
                parse_blocks(text, _ANY_COUNT, name)
            except BlockSelectionError as exc:
                raise node_error(NODE, name, str(exc)) from None
        i = int(index) - 1
        lora = RegionLoRA(lora_name, path, strength, start, end, str(double_blocks), str(single_blocks))
        return io.NodeOutput(regions[:i] + (with_lora(regions[i], lora),) + regions[i + 1:])


NODES = [JointAttentionRegionLoRA]
