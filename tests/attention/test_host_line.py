"""Issue 16: attention/ is pure torch: no ComfyUI import, none of ComfyUI's call conventions."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


def test_every_attention_module_imports_with_torch_alone():
    modules = sorted(p.stem for p in (ROOT / "attention").glob("*.py") if p.stem != "__init__")
    code = (f"import sys; sys.path.insert(0, {str(SUPPORT)!r}); import ja_host; ja_host.pack_package(); "
            + "; ".join(f"import joint_attention_pack.attention.{m}" for m in modules)
            + "; bad = [m for m in sys.modules if m == 'comfy' or m.startswith('comfy.')]; assert not bad, bad")
    env = dict(os.environ, COMFYUI_PATH="/nonexistent")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr[-3000:]


def test_no_host_call_convention_in_attention():
    banned = ("skip_reshape", "transformer_options", "original_block", "diffusion_model", "import comfy", "from comfy")
    for path in (ROOT / "attention").glob("*.py"):
        text = path.read_text()
        assert not [word for word in banned if word in text], path.name


EXECUTOR = ("joint", "paths", "dispatcher", "kernels", "layout")
FEATURES = ("taca", "regional", "capture", "text_scale")


def _imported_modules(path: Path) -> set:
    """Modules of the pack a file imports (`from .x import`, `from . import x`, `import ...attention.x`)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module:
                names.add(node.module.split(".")[0])
            elif node.level:
                names.update(alias.name for alias in node.names)
            elif node.module:
                names.add(node.module.split(".")[-1])
        elif isinstance(node, ast.Import):
            names.update(alias.name.split(".")[-1] for alias in node.names)
    return names


def test_the_executor_imports_no_feature():
    """Issue 29: features contribute a structure, logit modifiers and observers; the executor composes them
    without knowing which feature made them."""
    for module in EXECUTOR:
        found = _imported_modules(ROOT / "attention" / f"{module}.py") & set(FEATURES)
        assert not found, f"attention/{module}.py imports {sorted(found)}"
        text = (ROOT / "attention" / f"{module}.py").read_text()
        assert "gamma" not in text, f"attention/{module}.py names a feature's parameter"


def test_the_import_check_sees_imports():
    """The check above must be able to fail: the features themselves import the executor."""
    assert "joint" in _imported_modules(ROOT / "attention" / "regional.py")
    assert "forward" in _imported_modules(ROOT / "attention" / "taca.py")


def test_every_attention_module_has_its_pure_torch_tests():
    """Tests mirror the source: each module of attention/ has tests/attention/test_<module>.py."""
    modules = sorted(p.stem for p in (ROOT / "attention").glob("*.py") if p.stem != "__init__")
    missing = [m for m in modules if not (ROOT / "tests" / "attention" / f"test_{m}.py").exists()]
    assert not missing, f"attention modules without tests here: {missing}"
