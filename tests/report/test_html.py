"""The self-contained HTML report, checked as a browser renders it (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from lifelong.core.errors import DataError
from lifelong.report.html import markdown_to_html, write_html
from lifelong.report.plots import accuracy_heatmap

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


class Page(HTMLParser):
    """Images with their attributes, table cells' text, the body's attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.cells: list[str] = []
        self.body: dict[str, str] = {}
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def rendered_dom(path, tmp_path) -> str:
    """The DOM of `path` after Chromium loaded it and ran its scripts."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("headless Chromium is needed to check the HTML report: apt-get install -y chromium")
    done = subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", "--dump-dom", path.resolve().as_uri()],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_markdown_becomes_a_page_with_tables_and_inlined_images(tmp_path):
    accuracy_heatmap([[0.1, 0.1], [0.9, 0.2], [0.5, 0.8]], tmp_path / "m.png")
    page = markdown_to_html("# T\n\n| a | b |\n|---|---|\n| x <y> | 1 |\n\n![matrix](m.png)\n", tmp_path, "T & co")
    parsed = _parse(page)
    assert parsed.cells == ["a", "b", "x <y>", "1"]  # text escaped, not markup
    [image] = parsed.images
    assert image["alt"] == "matrix" and image["src"].startswith("data:image/png;base64,iVBORw0KGgo")
    assert "<title>T &amp; co</title>" in page


def test_a_missing_image_is_an_error_not_a_broken_link(tmp_path):
    (tmp_path / "report.md").write_text("# R\n\n![gone](gone.png)\n")
    with pytest.raises(DataError, match="'gone.png' is missing"):
        write_html(tmp_path / "report.md")


def test_comparison_page_renders_its_tables_and_every_image(compared, tmp_path):
    page_path = compared / "report.html"
    static = _parse(page_path.read_text())
    markdown_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (compared / "report.md").read_text())
    assert len(static.images) == len(markdown_images) == 6  # pareto, forgetting, 3 matrices, curves
    assert all(img["src"].startswith("data:image/png;base64,") for img in static.images)  # self-contained

    dom = _parse(rendered_dom(page_path, tmp_path))
    assert dom.body.get("data-checked") == "true"  # the page's load handler ran
    assert len(dom.images) == len(markdown_images)
    assert [img.get("data-loaded") for img in dom.images] == ["true"] * len(markdown_images)
    for header in ("Method", "ACC", "BWT", "FWT", "Forgetting", "Wall time (s)", "Peak memory (MB)", "Stored",
                   "Parameters", "Category", "Memory Cost", "Compute Cost", "Forward Transfer", "Scalability"):
        assert header in dom.cells, header
    assert {"naive", "replay", "cumulative"} <= set(dom.cells)


def test_a_broken_image_is_seen_by_the_browser(tmp_path):
    """Negative control: the same check reports an image that cannot be decoded."""
    page = markdown_to_html("# R\n\n![bad](data:image/png;base64,AAAA)\n", tmp_path, "R")
    (tmp_path / "bad.html").write_text(page)
    dom = _parse(rendered_dom(tmp_path / "bad.html", tmp_path))
    assert [img.get("data-loaded") for img in dom.images] == ["false"]
