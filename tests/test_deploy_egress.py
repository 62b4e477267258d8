"""deploy/: the egress alert rules (promtool check + unit tests, and proof that the unit
tests fail when a threshold or duration is wrong), held to the series the exporter emits."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "deploy", "prometheus", "portscope-egress.rules.yml")
TEST = os.path.join(ROOT, "deploy", "tests", "egress", "portscope-egress.rules.test.yml")

pytestmark = pytest.mark.live      # promtool, and one real collection of this host

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"),
                                    reason="promtool not installed (scripts/test.sh installs Debian's prometheus)")


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.live
@needs_promtool
def test_rules_check_and_unit_tests_pass():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0 and "SUCCESS: 2 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", TEST)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


@pytest.mark.live
@needs_promtool
@pytest.mark.parametrize("old, new", [
    ("portscope_egress_destination_budget_ratio > 0.95\n        for: 5m",
     "portscope_egress_destination_budget_ratio > 0.98\n        for: 5m"),
    ("for: 5m", "for: 8m"),
    ("portscope_egress_destination_budget_ratio > 0.8 and", "portscope_egress_destination_budget_ratio > 0.9 and"),
    ("for: 15m", "for: 17m"),
])
def test_unit_tests_catch_a_broken_rule(tmp_path, old, new):
    text = open(RULES).read()
    assert old in text
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "portscope-egress.rules.yml").write_text(text.replace(old, new, 1))
    (tmp_path / "tests" / "egress").mkdir(parents=True)
    shutil.copy(TEST, tmp_path / "tests" / "egress")
    r = promtool("test", "rules", str(tmp_path / "tests" / "egress" / os.path.basename(TEST)))
    assert r.returncode != 0 and "FAILED" in (r.stdout + r.stderr)


def test_rules_use_series_the_exporter_emits():
    import re

    from portscope.egress import budget
    from portscope.exporter import Exporter, PortscopeCollector
    from prometheus_client.parser import text_string_to_metric_families
    text = Exporter(PortscopeCollector([None], egress=budget(nat_budget=10), top=5)).render().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    used = set(re.findall(r"\bportscope_egress_[a-z_]+\b", open(RULES).read()))
    assert used and used <= names, used - names
