"""The node reference is generated from the node definitions and kept in sync; every input is explained."""
import importlib.util

from ja_host import ROOT
from joint_attention_pack.nodes import NODES, node_info


def _render():
    spec = importlib.util.spec_from_file_location("_ja_node_reference", ROOT / "scripts" / "node_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(node_info())


def test_node_reference_is_current():
    assert (ROOT / "docs" / "NODES.md").read_text() == _render(), "run scripts/node_reference.py"


def test_every_node_and_input_is_documented():
    infos = node_info()
    assert len(NODES) == len(infos) == 8
    for key, info in infos.items():
        assert info["category"].startswith("joint_attention/"), key
        assert info["display_name"] and info["description"], key
        assert all(info["output_tooltips"]) and len(info["output_tooltips"]) == len(info["output"]), key
        for group in ("required", "optional"):
            for name, (_kind, *rest) in info["input"].get(group, {}).items():
                assert rest and rest[0].get("tooltip"), f"{key}.{name} has no tooltip"


def test_nodes_use_the_v3_schema_and_register_through_the_extension():
    """ComfyUI's current node API: `io.ComfyNode` classes listed by `comfy_entrypoint` (no V1 mappings)."""
    import asyncio

    from comfy_api.latest import ComfyExtension, io

    import joint_attention_pack as pack

    assert not hasattr(pack, "NODE_CLASS_MAPPINGS")
    extension = asyncio.run(pack.comfy_entrypoint())
    assert isinstance(extension, ComfyExtension)
    listed = asyncio.run(extension.get_node_list())
    assert listed == NODES and all(issubclass(node, io.ComfyNode) for node in listed)
    v1 = ("INPUT_TYPES", "RETURN_TYPES", "FUNCTION", "VALIDATE_INPUTS", "IS_CHANGED")
    assert not [(node.__name__, name) for node in listed for name in v1 if name in vars(node)]


def test_registry_metadata():
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy = meta["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"] and comfy["Icon"].endswith("docs/icon.png")
    assert (ROOT / "docs" / "icon.png").is_file()
    assert {"js", "example_workflows"} <= set(comfy["includes"])
    assert meta["project"]["license"]["text"] == "GPL-3.0-or-later" and (ROOT / "LICENSE").is_file()
    assert meta["project"]["version"] in (ROOT / "CHANGELOG.md").read_text()


def test_the_shipped_web_folder_holds_no_tests():
    """WEB_DIRECTORY (js/) is served to every user's browser; the JS unit tests live in tests/js/."""
    shipped = [p.relative_to(ROOT).as_posix() for p in (ROOT / "js").rglob("*")]
    assert shipped and not [p for p in shipped if "test" in p.lower()], shipped
    assert list((ROOT / "tests" / "js").glob("*.test.mjs"))


def test_readme_model_support_table_is_current():
    """README's family x feature table is the one families/ renders, a row per family module."""
    from joint_attention_pack.families import FAMILIES, support_table

    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- support table")
    begin = readme.index("\n", begin) + 1
    end = readme.index("<!-- end support table -->")
    assert readme[begin:end].strip() == support_table(), "README's support table is stale: paste support_table()"
    assert len(FAMILIES) == len(support_table().splitlines()) - 2
    assert all(f.models and f.classes for f in FAMILIES)


def _works_with():
    spec = importlib.util.spec_from_file_location("_ja_works_with", ROOT / "scripts" / "works_with.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_works_with_table_lists_exactly_the_composition_tests():
    """README's Works with rows are the works_with-marked tests, no more, no fewer, with their own descriptions
    (`make tested-on` writes the results from the recorded runs)."""
    module = _works_with()
    rows = module.compositions()
    assert len(rows) >= 8 and len({r["test"] for r in rows}) == len(rows)
    text = (ROOT / "README.md").read_text()
    section = text.split(module.START, 1)[1].split(module.END, 1)[0].strip().splitlines()
    assert len(section) == 2 + len(rows), "run `make tested-on` (scripts/works_with.py --readme)"
    for row, line in zip(rows, section[2:]):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert cells[:3] == [row["with"], row["pack"], row["check"]], line
        assert cells[-1] == f"`tests/{row['file']}::{row['test']}`", line
        assert all(cell != "not run" for cell in cells[3:-1]), f"{row['test']} has no recorded result on a host"


def test_every_error_names_a_node_as_users_see_it():
    """Node errors and the reach check name a node by its display name, the one on the node in the graph."""
    from joint_attention_pack.integration import reach
    from joint_attention_pack.nodes import NODES
    from joint_attention_pack.nodes.common import DISPLAY_NAMES, node_error

    shown = {info["name"]: info["display_name"] for info in (node.GET_NODE_INFO_V1() for node in NODES)}
    assert shown == DISPLAY_NAMES
    assert set(reach.NODES.values()) <= set(DISPLAY_NAMES.values())
    assert str(node_error("JointAttentionTACA", "gamma", "x")) == "[TACA (text attention temperature)] input 'gamma': x"
