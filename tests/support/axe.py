"""Accessibility checks in the browser tests: axe-core (from npm, pinned) injected into a page.

``make test`` installs it (``scripts/node-tools.sh``). A page passes when axe finds no violation of
WCAG 2.0/2.1 A or AA rules with a serious or critical impact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical violations on the page as it is now (a Playwright page)."""
    assert AXE.exists(), "axe-core is not installed: run `make test` (scripts/node-tools.sh)"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", TAGS)
    return [v for v in result["violations"] if v.get("impact") in {"serious", "critical"}]


def assert_accessible(page: Any) -> None:
    """Fail with each rule, its impact and the first offending elements when axe finds a problem."""
    violations = axe_violations(page)
    report = [
        f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] for n in v["nodes"][:3])
        for v in violations
    ]
    assert not violations, f"{page.url}:\n" + "\n".join(report)
