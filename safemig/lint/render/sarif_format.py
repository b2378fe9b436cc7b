"""SARIF 2.1.0, for GitHub code scanning and other SARIF viewers."""

from __future__ import annotations

import json

from safemig import __version__

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render(report, rules, color: bool = False) -> str:
    used = sorted({f.rule for f in report.findings})
    by_id = {r.id: r for r in rules}
    rule_index = {rule_id: i for i, rule_id in enumerate(used)}
    descriptors = []
    for rule_id in used:
        rule = by_id.get(rule_id)
        doc = rule.doc if rule else {}
        descriptors.append(
            {
                "id": rule_id,
                "shortDescription": {"text": rule.summary if rule else rule_id},
                "fullDescription": {"text": doc.get("Why", rule_id)},
                "help": {"text": f"Bad:\n{doc.get('Bad', '')}\n\nGood:\n{doc.get('Good', '')}"},
                "defaultConfiguration": {"level": rule.severity if rule else "warning"},
            }
        )
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": rule_index[f.rule],
            "level": "error" if f.severity == "error" else "warning",
            "message": {"text": f"{f.message}. Safe alternative: {f.hint}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.path},
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
