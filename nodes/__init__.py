"""ComfyUI node classes (V3 schema), one file per feature; each stays thin over `integration/` and `attention/`."""
from comfy_api.latest import ComfyExtension

from ..integration.runtime import register_routes
from . import canvas, guidance, maps, memory, region_lora, regional

NODES = [*regional.NODES, *canvas.NODES, *guidance.NODES, *maps.NODES, *memory.NODES, *region_lora.NODES]


class JointAttentionExtension(ComfyExtension):
    async def get_node_list(self):
        return list(NODES)


async def comfy_entrypoint() -> JointAttentionExtension:
    return JointAttentionExtension()


def node_info() -> dict:
    """node id -> the definition the server serves at /object_info (the V1 view of each schema)."""
    return {info["name"]: info for info in (node.GET_NODE_INFO_V1() for node in NODES)}


register_routes()
