"""`make gpu-check`'s benchmark script: it refuses cleanly without CUDA, and every part of it runs (on the CPU at
tiny sizes, `--smoke`), rewriting only its own section of the report."""
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "gpu.py"


def _run(*args, hide_cuda=True):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="" if hide_cuda else os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=900)


def test_gpu_check_refuses_without_cuda(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nCPU tables\n")
    for args in (("--require-cuda",), ("--output", str(report))):
        done = _run(*args)
        assert done.returncode == 2, done.stderr
        assert "no CUDA device" in done.stderr and "make gpu-check" in done.stderr
    assert report.read_text() == "# Benchmarks\n\nCPU tables\n"  # nothing written


def test_gpu_benchmark_smoke_run_writes_only_its_section(tmp_path):
    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n\nCPU tables\n")
    done = _run("--smoke", "--output", str(report))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    assert text.startswith("# Benchmarks\n\nCPU tables\n")
    assert text.count("<!-- gpu:start -->") == 1 and text.count("<!-- gpu:end -->") == 1
    for part in ("one attention call", "whole step", "the path the selector picks", "Z-Image-Turbo dims",
                 "baseline: one pass per region", "baseline: dense [B,H,L,L]", "Paths the selector kept"):
        assert part in text, part
    # Past its time bound a run reports the parts it left out; the section is replaced, never appended.
    done = _run("--smoke", "--output", str(report), "--budget-s", "0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = report.read_text()
    assert text.count("<!-- gpu:start -->") == 1 and "not run: the run's time bound was reached" in text


def test_replace_section_keeps_the_rest():
    sys.path.insert(0, str(HERE))
    try:
        import selector
    finally:
        sys.path.remove(str(HERE))
    text = selector.replace_section("head\n", "x", "one")
    assert text == "head\n\n<!-- x:start -->\none\n<!-- x:end -->\n"
    again = selector.replace_section(text + "\ntail\n", "x", "two")
    assert again == "head\n\n<!-- x:start -->\ntwo\n<!-- x:end -->\n\ntail\n"
