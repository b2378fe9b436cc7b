"""Every rule: documented (Why/Bad/Good), its Bad example fails, its Good example passes, golden output."""

from __future__ import annotations

import json
import os

import pytest

from safemig.lint.registry import all_rules
from safemig.lint.render import render
from tests.lint.conftest import REPO_ROOT, example_files

RULES = all_rules(REPO_ROOT / "rules")
GOLDEN = REPO_ROOT / "tests" / "lint" / "golden"
UPDATE = os.environ.get("SAFEMIG_UPDATE_GOLDEN") == "1"


def _lint_example(project, example: str, rule_ids=None):
    files = example_files(example)
    for path, text in files.items():
        project.write(path, text)
    first = next(iter(files))
    from safemig.lint.engine import lint_paths
    from safemig.lint.finding import LintReport

    report = lint_paths([project.root / first], project.config(), use_cache=False)
    return report, LintReport([f for f in report.findings if rule_ids is None or f.rule in rule_ids], report.files)


def test_rule_ids_are_kebab_case_file_names_and_unique():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.source.stem == rule.id.replace("-", "_")
        assert rule.summary and "\n" not in rule.summary


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_bad_example_fails(house_project, rule):
    _, report = _lint_example(house_project, rule.doc["Bad"], {rule.id})
    assert report.findings, f"{rule.id}: its Bad example raised no finding"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_good_example_passes_every_error_rule(house_project, rule):
    full, _ = _lint_example(house_project, rule.doc["Good"])
    errors = [(f.rule, f.message) for f in full.findings if f.severity == "error" and f.rule != "tenant-table"]
    assert errors == [], f"{rule.id}: its Good example has error findings"
    assert not [f for f in full.findings if f.rule == rule.id]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_golden_output(house_project, rule, fmt):
    _, report = _lint_example(house_project, rule.doc["Bad"], {rule.id})
    rendered = render(report, RULES, fmt)
    golden = GOLDEN / f"{rule.id}.{'txt' if fmt == 'text' else 'json'}"
    if UPDATE:
        golden.write_text(rendered, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden.name}: run with SAFEMIG_UPDATE_GOLDEN=1 once and review it"
    assert rendered == golden.read_text(encoding="utf-8")
    if fmt == "json":
        for item in json.loads(rendered):
            assert set(item) == {"path", "line", "column", "rule", "severity", "message", "hint"}
            assert item["line"] >= 1 and item["column"] >= 1


def test_readme_lists_every_builtin_rule_with_its_severity():
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("<!-- section:lint -->"):readme.index("<!-- /section:lint -->")]
    for rule in RULES:
        if rule.builtin:
            assert f"| `{rule.id}` | {rule.severity} |" in section, rule.id
