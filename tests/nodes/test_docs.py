"""The node reference is generated from the node definitions and kept in sync; every input is explained."""
import importlib.util

import joint_attention_pack as pack
from ja_host import ROOT


def _render():
    spec = importlib.util.spec_from_file_location("_ja_node_reference", ROOT / "scripts" / "node_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)


def test_node_reference_is_current():
    assert (ROOT / "docs" / "NODES.md").read_text() == _render(), "run scripts/node_reference.py"


def test_every_node_and_input_is_documented():
    for key, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY.startswith("joint_attention/"), key
        assert key in pack.NODE_DISPLAY_NAME_MAPPINGS and getattr(cls, "DESCRIPTION", ""), key
        assert len(getattr(cls, "OUTPUT_TOOLTIPS", ())) == len(cls.RETURN_TYPES), key
        for group in ("required", "optional"):
            for name, (_kind, *rest) in cls.INPUT_TYPES().get(group, {}).items():
                assert rest and rest[0].get("tooltip"), f"{key}.{name} has no tooltip"


def test_registry_metadata():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].endswith("docs/icon.png")
    assert (ROOT / "docs" / "icon.png").is_file()
    assert {"js", "example_workflows"} <= set(comfy["includes"])
    assert meta["project"]["license"]["text"] == "GPL-3.0-or-later" and (ROOT / "LICENSE").is_file()
    assert meta["project"]["version"] in (ROOT / "CHANGELOG.md").read_text()
