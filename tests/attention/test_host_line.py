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
