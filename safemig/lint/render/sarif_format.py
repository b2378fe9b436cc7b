"""SARIF 2.1.0, for GitHub code scanning and other SARIF viewers."""

from __future__ import annotations

import json
from urllib.parse import quote

from safemig import __version__

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str) -> str:
    """A path as a SARIF ``artifactLocation.uri``: a percent-encoded URI reference (``a b#1.sql`` ->
    ``a%20b%231.sql``), relative as it is shown, or a ``file://`` URI when absolute."""
    encoded = quote(path.replace("\\", "/"), safe="/-._~")
    return f"file://{encoded}" if path.startswith("/") else encoded


def _help(rule) -> dict:
    """The rule's ``safemig explain`` text, plain and as Markdown (what a code-scanning viewer shows)."""
    doc = rule.doc
    text = "\n\n".join([doc["intro"], *(f"{section}:\n{doc.get(section, '')}" for section in ("Why", "Bad", "Good"))])
    markdown = "\n\n".join(
        [
            doc["intro"],
            f"**Why:** {' '.join(doc.get('Why', '').split())}",
            f"**Bad:**\n```sql\n{doc.get('Bad', '')}\n```",
            f"**Good:**\n```sql\n{doc.get('Good', '')}\n```",
            f"Run `safemig explain {rule.id}` for this text; silence one statement with "
            f"`-- safemig:ignore {rule.id} -- <reason>`.",
        ]
    )
    return {"text": text, "markdown": markdown}


def help_uri(template: str, rule_id: str) -> str:
    """``[lint] rule_docs_url`` with ``{rule}`` filled in (a rule id is kebab-case: nothing to escape,
    but a house rule's is percent-encoded all the same)."""
    return template.replace("{rule}", quote(rule_id, safe="-._~"))


def render(report, rules, color: bool = False, rule_docs_url: str | None = None) -> str:
    """SARIF 2.1.0. Each rule used carries ``help`` (its ``safemig explain`` text) and, when
    ``[lint] rule_docs_url`` is set, ``helpUri``: SARIF wants an absolute URI there, and safemig
    has no public docs site to invent one for."""
    used = sorted({f.rule for f in report.findings})
    by_id = {r.id: r for r in rules}
    rule_index = {rule_id: i for i, rule_id in enumerate(used)}
    descriptors = []
    for rule_id in used:
        rule = by_id.get(rule_id)
        doc = rule.doc if rule else {}
        descriptor = {
            "id": rule_id,
            "shortDescription": {"text": rule.summary if rule else rule_id},
            "fullDescription": {"text": doc.get("Why", rule_id)},
        }
        if rule_docs_url:
            descriptor["helpUri"] = help_uri(rule_docs_url, rule_id)
        descriptor["help"] = _help(rule) if rule else {"text": rule_id}
        descriptor["defaultConfiguration"] = {"level": rule.severity if rule else "warning"}
        descriptors.append(descriptor)
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": rule_index[f.rule],
            "level": "error" if f.severity == "error" else "warning",
            "message": {"text": f"{f.message}. Safe alternative: {f.hint}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.path)},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }
            ],
        }
        for f in report.findings
    ]
    sarif = {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "safemig", "version": __version__, "rules": descriptors}},
                "results": results,
            }
        ],
    }
    return json.dumps(sarif, indent=2, ensure_ascii=False) + "\n"
