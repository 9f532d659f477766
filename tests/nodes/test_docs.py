"""The documentation: README.md is the front door, the manuals live in docs/. The node reference and the
generated tables are kept in sync with what generates them; every input is explained; every relative link between
the pages resolves."""
import importlib.util
import os
import re
from pathlib import Path

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
    assert len(NODES) == len(infos) == 9
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
    from joint_attention_pack.families import FAMILIES, REFUSED, support_table

    readme = (ROOT / "README.md").read_text()
    begin = readme.index("<!-- support table")
    begin = readme.index("\n", begin) + 1
    end = readme.index("<!-- end support table -->")
    assert readme[begin:end].strip() == support_table(), "README's support table is stale: run scripts/support_table.py"
    table = support_table()
    for family in FAMILIES:  # a row per supported family, and a row with its reason per refused one
        assert family.models and family.classes and f"\n| {family.models} | yes |" in table
    for family in REFUSED:
        assert family.models and family.classes and family.refused and family.refused in table


def _script(name: str):
    """scripts/NAME.py (loaded by path: ComfyUI owns generic top-level names)."""
    spec = importlib.util.spec_from_file_location(f"_ja_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _generated_section(module) -> list[str]:
    """The lines between a generator's start and end markers on the page it writes."""
    text = module.PAGE.read_text()
    assert module.START in text and module.END in text, f"{module.PAGE.name} lost its generated-table markers"
    return text.split(module.START, 1)[1].split(module.END, 1)[0].strip().splitlines()


def test_works_with_table_lists_exactly_the_composition_tests():
    """docs/works-with.md's rows are the works_with-marked tests, no more, no fewer, with their own descriptions
    (`make tested-on` writes the results from the recorded runs)."""
    module = _script("works_with")
    assert module.PAGE == ROOT / "docs" / "works-with.md"
    rows = module.compositions()
    assert len(rows) >= 8 and len({r["test"] for r in rows}) == len(rows)
    section = _generated_section(module)
    assert len(section) == 2 + len(rows), "run `make tested-on` (scripts/works_with.py --docs)"
    for row, line in zip(rows, section[2:]):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert cells[:3] == [row["with"], row["pack"], row["check"]], line
        assert cells[-1] == f"`tests/{row['file']}::{row['test']}`", line
        assert all(cell != "not run" for cell in cells[3:-1]), f"{row['test']} has no recorded result on a host"


def test_tested_on_table_has_the_generators_columns():
    """docs/testing.md's Tested on table is the one scripts/tested_on.py writes: its header, a row per host."""
    module = _script("tested_on")
    assert module.PAGE == ROOT / "docs" / "testing.md"
    section = _generated_section(module)
    header = module.table([]).splitlines()
    assert section[:2] == header, "run `make tested-on` (scripts/tested_on.py --docs)"
    hosts = [line.split("|")[1].split("(")[0].strip() for line in section[2:]]
    assert hosts and set(hosts) <= set(module.ORDER), hosts
    columns = header[0].count("|")
    assert all(line.count("|") == columns for line in section[2:]), section


# --- Links between the pages ------------------------------------------------------------------------------------

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), the target up to whitespace (an optional "title" may follow).
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_CODE = re.compile(r"`[^`]*`")


def _prose(text: str) -> str:
    """The page without code blocks and code spans (a link written inside code is not a link)."""
    return _CODE.sub("", _FENCE.sub("", text))


def _anchors(text: str) -> set[str]:
    """The anchors GitHub gives the page's headings: lowercase, punctuation dropped, spaces as hyphens, and -1, -2
    for repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _FENCE.sub("", text).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def broken_links(page: Path) -> list[str]:
    """Every relative link of the page whose file, or whose #anchor in that file, does not exist."""
    broken = []
    for target in _LINK.findall(_prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # https:, mailto: ...: not a file of this repository
        path_part, _, anchor = target.partition("#")
        linked = Path(os.path.normpath(page.parent / path_part)) if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
            broken.append(f"{target}: {linked.name} has no heading with anchor #{anchor}")
    return broken


def test_every_relative_link_resolves():
    assert len(PAGES) > 10
    for page in PAGES:
        assert not broken_links(page), f"{page.relative_to(ROOT)}: {broken_links(page)}"


def test_the_link_check_finds_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Some `code` heading\n\n## Some code heading\n")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#other-page) [ok](other.md#some-code-heading-1) [ok](#top) ![ok](other.md)\n"
                    "# Top\n[web](https://example.com/x.md) `[code](nowhere.md)`\n"
                    "[gone](missing.md) [bad anchor](other.md#no-such-heading)\n")
    assert [b.split(":")[0] for b in broken_links(page)] == ["missing.md", "other.md#no-such-heading"]


def test_readme_links_every_manual_and_every_manual_links_back():
    readme = _prose((ROOT / "README.md").read_text())
    for page in PAGES[1:]:
        name = page.relative_to(ROOT).as_posix()
        assert f"]({name})" in readme, f"README.md does not link {name}"
        assert "](../README.md" in _prose(page.read_text()), f"{name} does not link back to README.md"


def test_every_error_names_a_node_as_users_see_it():
    """Node errors and the reach check name a node by its display name, the one on the node in the graph."""
    from joint_attention_pack.integration import reach
    from joint_attention_pack.nodes import NODES
    from joint_attention_pack.nodes.common import DISPLAY_NAMES, node_error

    shown = {info["name"]: info["display_name"] for info in (node.GET_NODE_INFO_V1() for node in NODES)}
    assert shown == DISPLAY_NAMES
    assert set(reach.NODES.values()) <= set(DISPLAY_NAMES.values())
    assert str(node_error("JointAttentionTACA", "gamma", "x")) == "[TACA (text attention temperature)] input 'gamma': x"
