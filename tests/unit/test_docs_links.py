"""Every relative link in README.md and docs/*.md resolves: the file exists and, for `file#anchor` or
`#anchor`, the target has a heading with that anchor under GitHub's slug rules."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _outside_fences(text: str) -> list[str]:
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "")
    text = text.strip().lower()
    return "".join("-" if ch == " " else ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _outside_fences(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = []
    for src in files:
        for line in _outside_fences(src.read_text(encoding="utf-8")):
            line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                    continue
                path, _, anchor = target.partition("#")
                dest = (src.parent / path).resolve() if path else src
                where = f"{src.relative_to(ROOT)}: ]({target})"
                if not dest.exists():
                    problems.append(f"{where}: no such file")
                elif anchor and (dest.is_dir() or dest.suffix != ".md"):
                    problems.append(f"{where}: anchor on a file that is not Markdown")
                elif anchor and anchor not in anchors(dest):
                    problems.append(f"{where}: no heading #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_slug_follows_github() -> None:
    assert slug("Roles and security") == "roles-and-security"
    assert slug("`[risk_desk]`") == "risk_desk"
    assert slug("`[[oms]]`") == "oms"
    assert slug("Power loss: `[journal] sync`") == "power-loss-journal-sync"
    assert (
        slug('What changed (see docs/operations.md "The trading day")')
        == "what-changed-see-docsoperationsmd-the-trading-day"
    )


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    problems = broken_links()
    assert not problems, "broken links:\n" + "\n".join(problems)
