"""A region's LoRA chosen in its Region Canvas row: the canvas attaches it as Region LoRA does, and its value is
checked (a file of the loras folder, a plain name that cannot leave it, a strength in range) with errors naming the
node, the input and the fix.

Identity (no reference): the canvas with a LoRA on region k samples bit for bit what the canvas without it followed
by Region LoRA (index k, same file, same strength) samples; Region LoRA's own tests hold it against the dense
reference and core's LoRA loader.
"""
import json

import pytest
import torch

from ja_families import family_params
from ja_lora import write_lora
from ja_nodes import run_node
from ja_regions import HEIGHT, WIDTH
from ja_tiny import make_cond, patcher, sample, tiny_clip
from joint_attention_pack.families import model_family
from joint_attention_pack.nodes import canvas_state
from joint_attention_pack.nodes.canvas import JointAttentionRegionCanvas
from joint_attention_pack.nodes.region_lora import JointAttentionRegionLoRA
from joint_attention_pack.nodes.regional import JointAttentionRegionalApply


@pytest.fixture(scope="module")
def clip():
    return tiny_clip()


def _value(lora=None):
    """Two regions on 16 px cells (left 3 columns, right 3 columns of the 96 x 64 canvas); `lora`: {index from 1:
    (name, strength)} chosen in those rows."""
    mw, mh = canvas_state.mask_dims(WIDTH, HEIGHT)
    left, right = torch.zeros(mh, mw), torch.zeros(mh, mw)
    left[:, :6], right[:, 4:] = 1, 1
    regions = [{"prompt": "a red fox", "mask": left}, {"prompt": "a blue bird", "mask": right, "strength": 1.5}]
    for k, choice in (lora or {}).items():
        regions[k - 1]["lora"] = choice
    return canvas_state.encode_value(WIDTH, HEIGHT, regions)


def _apply(base, regions, tiny):
    single = "all" if tiny.n_single else "none"
    return run_node(JointAttentionRegionalApply, base, regions, 0.2, 0.0, 1.0, "all", single, "restricted",
                    "background")[0]


@pytest.mark.parametrize("family", family_params("region_lora_reference"))
def test_a_lora_chosen_in_a_canvas_row_samples_as_region_lora_on_that_region(family, clip):
    tiny = family.build()
    base = patcher(tiny)
    if not model_family(base).adapter_roles:
        pytest.skip(f"{family.name}: region LoRAs are not mapped for this family yet (no adapter role table)")
    name = write_lora(base, f"canvas_row_{family.name}.safetensors", "comfy", seed=6)
    pos, neg = make_cond(tiny, seed=1), make_cond(tiny, seed=2)
    kw = dict(seed=0, steps=2, cfg=2.5, width=WIDTH, height=HEIGHT)
    plain = run_node(JointAttentionRegionCanvas, clip, WIDTH, HEIGHT, _value())[0]
    # The canvas encodes with the tiny CLIP-L (64 features, 77 tokens): families whose text is not that (HiDream's
    # Llama states, AuraFlow's width, LongCat's prompt length) refuse its regions by name, with or without a LoRA.
    try:
        without = sample(_apply(base, plain, tiny), pos, neg, **kw)
    except ValueError as exc:
        if "[Apply Regional Attention] input 'regions'" not in str(exc):
            raise
        pytest.skip(f"{family.name}: the tiny CLIP-L's prompts do not fit this family ({exc})")
    for k in (1, 2):
        in_row = run_node(JointAttentionRegionCanvas, clip, WIDTH, HEIGHT, _value({k: (name, 0.7)}))[0]
        by_node = run_node(JointAttentionRegionLoRA, plain, k, name, 0.7, 0.0, 1.0)[0]
        assert [len(r.adapters) for r in in_row] == [int(j == k) for j in (1, 2)]
        got = sample(_apply(base, in_row, tiny), pos, neg, **kw)
        assert torch.equal(got, sample(_apply(base, by_node, tiny), pos, neg, **kw)), k
    assert not torch.equal(got, without)  # the LoRA acts


def test_a_drawing_without_a_lora_saves_no_lora_field():
    assert "lora" not in _value()
    assert json.loads(_value({2: ("a.safetensors", 0.5)}))["regions"][1]["lora"] == {"name": "a.safetensors",
                                                                                        "strength": 0.5}
    _, _, regions = canvas_state.parse(_value({2: ("sub/a.safetensors", -2)}))
    assert [r.lora for r in regions] == [None, ("sub/a.safetensors", -2.0)]


@pytest.mark.parametrize("lora, says", [
    ("x.safetensors", "must be an object"),
    ({"name": "x.safetensors", "strength": 1, "path": "/etc"}, "must be an object"),
    ({"strength": 1}, "must be a file name"),
    ({"name": "", "strength": 1}, "must be a file name"),
    ({"name": "x" * 300, "strength": 1}, "must be a file name"),
    ({"name": "../secret.safetensors", "strength": 1}, "no '..'"),
    ({"name": "sub/../../secret.safetensors", "strength": 1}, "no '..'"),
    ({"name": "sub\\..\\secret.safetensors", "strength": 1}, "no '..'"),
    ({"name": "/etc/passwd", "strength": 1}, "no absolute path"),
    ({"name": "C:x.safetensors", "strength": 1}, "no absolute path"),
    ({"name": "x.safetensors", "strength": 11}, "between -10 and 10"),
    ({"name": "x.safetensors", "strength": True}, "between -10 and 10"),
    ({"name": "x.safetensors", "strength": "1"}, "between -10 and 10"),
])
def test_a_bad_lora_in_the_value_is_refused_naming_the_region_and_the_fix(lora, says, clip):
    raw = json.loads(_value())
    raw["regions"][1]["lora"] = lora
    value = json.dumps(raw)
    message = JointAttentionRegionCanvas.validate_inputs(value)
    assert message.startswith("[Region Canvas] input 'regions': region 2: ") and says in message, message
    assert "LoRA" in message and ("button" in message or "picker" in message), message
    with pytest.raises(ValueError, match=r"^\[Region Canvas\] input 'regions': region 2: ") as err:
        run_node(JointAttentionRegionCanvas, clip, WIDTH, HEIGHT, value)
    assert says in str(err.value)


def test_a_lora_missing_from_the_loras_folder_is_refused_naming_the_region(clip):
    value = _value({2: ("not_there.safetensors", 1.0)})
    message = JointAttentionRegionCanvas.validate_inputs(value)
    assert message == ("[Region Canvas] input 'regions': Region 2's LoRA 'not_there.safetensors' is not in the loras "
                       "folder; choose a listed LoRA"), message
    with pytest.raises(ValueError) as err:
        run_node(JointAttentionRegionCanvas, clip, WIDTH, HEIGHT, value)
    assert str(err.value) == message
