"""A self-contained HTML page from a markdown report: images inlined as data URIs, one file to share.

A tiny inline script marks every image, once the page has loaded, with `data-loaded="true"` when
it decoded (complete and naturalWidth > 0), so a headless browser can check the page it rendered.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from pathlib import Path

from markdown_it import MarkdownIt

from lifelong.core.errors import DataError
from lifelong.core.records import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f2f2f2; }
img { max-width: 100%; margin: 0.3em; vertical-align: top; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""

CHECK_IMAGES = """
window.addEventListener("load", function () {
  document.querySelectorAll("img").forEach(function (img) {
    img.setAttribute("data-loaded", String(img.complete && img.naturalWidth > 0));
  });
  document.body.setAttribute("data-checked", "true");
});
"""


def data_uri(path: Path) -> str:
    """The file as a base64 data URI."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def markdown_to_html(text: str, base: str | Path, title: str) -> str:
    """A whole HTML page for markdown `text`; relative image paths are read from `base` and inlined."""
    base = Path(base)
    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(renderer, tokens, idx, options, env) -> str:
        token = tokens[idx]
        src = str(token.attrGet("src") or "")
        if not src.startswith("data:"):
            path = base / src
            if not path.is_file():
                raise DataError(f"report image {src!r} is missing from {base}; rebuild the report "
                                "(`lifelong report ...`) so its plots are written again")
            src = data_uri(path)
        alt = html.escape(token.content or "", quote=True)
        return f'<img src="{src}" alt="{alt}">'

    md.add_render_rule("image", image)
    body = md.render(text)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}"
            f"<script>{CHECK_IMAGES}</script>\n</body>\n</html>\n")


def write_html(markdown_path: str | Path, title: str | None = None) -> Path:
    """report.html beside a markdown report, self-contained."""
    markdown_path = Path(markdown_path)
    text = markdown_path.read_text(encoding="utf-8")
    title = title or next((line[2:] for line in text.splitlines() if line.startswith("# ")), markdown_path.stem)
    page = markdown_to_html(text, markdown_path.parent, title)
    return atomic_write_text(markdown_path.with_suffix(".html"), page)
