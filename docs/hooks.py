"""MkDocs hook: a page line ``<!-- include: PATH -->`` is replaced by the file at ``PATH``
(relative to the repository root), so the site's home page is the README and its changelog
page the CHANGELOG, with no copy by hand. Links into ``docs/`` are rewritten to the site's
(``docs/levels.md`` -> ``levels.md``) and links to the changelog to its page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)


def _included(match: re.Match) -> str:
    text = (ROOT / match.group(1)).read_text()
    text = re.sub(r"\]\(docs/", "](", text)
    return text.replace("](CHANGELOG.md)", "](changelog.md)")


def on_page_markdown(markdown: str, **kwargs) -> str:
    return INCLUDE.sub(_included, markdown)
