"""The pictures of the Region Canvas in README.md and docs/canvas.md are the browser tests' screenshots, committed
under docs/images/."""
import ast
import os
import re
from pathlib import Path

from ja_browser import readme_images
from ja_host import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CANVAS_PAGE = ROOT / "docs" / "canvas.md"


def shown_pictures() -> dict[str, str]:
    """Every .png README.md and the docs pages show, as a path from the repository root -> the page showing it."""
    shown = {}
    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+\.png)\)", page.read_text()):
            path = Path(os.path.normpath(page.parent / target))
            shown[path.relative_to(ROOT).as_posix()] = page.relative_to(ROOT).as_posix()
    return shown


def test_every_readme_picture_is_committed_and_comes_from_a_browser_test():
    images = readme_images()
    shown = shown_pictures()
    for path, page in shown.items():
        assert (ROOT / path).is_file(), f"{page} shows {path}, which is not in the repository"
    for name, test in images.IMAGES.items():
        assert f"docs/images/{name}" in shown, f"docs/images/{name} is listed but no page shows it"
        assert (images.DOCS_IMAGES / name).is_file(), f"docs/images/{name} is missing: run {test}"
        # The test named takes the screenshot and refreshes the committed copy.
        file, function = test.split("::")
        tree = ast.parse((ROOT / file).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body), test
        source = (ROOT / file).read_text()
        assert f'"{name}"' in source or "path.name" in source, f"{file} does not write {name}"
        assert "readme_images().refresh(" in source, f"{file} does not refresh the committed copy"
    # The front door shows the editor itself.
    assert "](docs/images/region_canvas.png)" in (ROOT / "README.md").read_text()


def test_the_canvas_manual_shows_the_editor_over_a_background():
    from PIL import Image

    assert "](images/region_canvas_background.png)" in CANVAS_PAGE.read_text()
    with Image.open(ROOT / "docs" / "images" / "region_canvas_background.png") as img:
        rgb = img.convert("RGB")
        assert rgb.width >= 400 and rgb.height >= 600, rgb.size  # the whole node: canvas, toolbar and region list
        pixels = list(rgb.resize((rgb.width // 4, rgb.height // 4)).getdata())
    share = lambda test: sum(1 for p in pixels if test(*p)) / len(pixels)  # noqa: E731
    # The test's picture: a blue sky and green hills under the drawing, not an empty grey canvas.
    assert share(lambda r, g, b: b > r + 40 and b > 150) > 0.08
    assert share(lambda r, g, b: g > r + 30 and g > b + 20) > 0.04


def test_refresh_copies_only_a_picture_that_looks_different(tmp_path, monkeypatch):
    from PIL import Image, ImageDraw

    images = readme_images()
    monkeypatch.setattr(images, "ARTIFACTS", tmp_path / "artifacts")
    monkeypatch.setattr(images, "DOCS_IMAGES", tmp_path / "docs")
    monkeypatch.delenv("JA_HOST", raising=False)
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    images.ARTIFACTS.mkdir()
    name = "region_canvas.png"
    shot = Image.new("RGB", (200, 100), (40, 40, 40))
    shot.save(images.ARTIFACTS / name)
    assert images.refresh(name) and (images.DOCS_IMAGES / name).is_file()  # new: copied
    shot.putpixel((5, 5), (255, 255, 255))  # one pixel: noise
    shot.save(images.ARTIFACTS / name)
    assert not images.refresh(name)
    ImageDraw.Draw(shot).rectangle([0, 0, 60, 60], fill=(200, 30, 30))  # a real change
    shot.save(images.ARTIFACTS / name)
    assert images.refresh(name)
    ImageDraw.Draw(shot).rectangle([100, 0, 160, 60], fill=(30, 200, 30))
    shot.save(images.ARTIFACTS / name)
    monkeypatch.setenv("JA_HOST", "latest")  # README describes the pinned host: the other host never writes
    assert not images.refresh(name)
    monkeypatch.delenv("JA_HOST")
    try:
        images.refresh("not_listed.png")
    except KeyError as exc:
        assert "readme_images.py" in str(exc)
    else:
        raise AssertionError("an unlisted picture was accepted")
