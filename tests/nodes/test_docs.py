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
