"""The shipped Prometheus alert rules (deploy/prometheus/): `promtool check rules` accepts them,
their unit tests (`promtool test rules`) pass, the example scrape configuration is valid, and the
tests cover every alert the rules define, firing and not firing, so a new alert without a test
fails here. promtool comes from Debian's `prometheus` package (scripts/setup.sh)."""
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "sluice-alerts.yml"
TESTS = DEPLOY / "sluice-alerts.test.yml"
CONFIG = DEPLOY / "prometheus.yml"


@pytest.fixture(scope="module")
def promtool():
    p = shutil.which("promtool")
    if p is None:
        pytest.skip("promtool missing: apt-get install prometheus (scripts/setup.sh)")
    return p


def run(promtool, *args):
    res = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=DEPLOY,
                         timeout=120)
    return res.returncode, res.stdout + res.stderr


def test_rules_check(promtool):
    rc, out = run(promtool, "check", "rules", str(RULES))
    assert rc == 0, out
    assert "SUCCESS" in out, out


def test_rules_unit_tests_pass(promtool):
    rc, out = run(promtool, "test", "rules", str(TESTS))
    assert rc == 0, out


def test_example_config_check(promtool):
    rc, out = run(promtool, "check", "config", str(CONFIG))
    assert rc == 0, out


def rules():
    """{alert: (expr, severity)} from the rules file. A line parser, not a YAML library: the
    file's layout is ours (one `- alert:`, `expr:` and `severity:` line per rule) and the
    suite needs no extra package for it."""
    out, name, expr = {}, None, None
    for line in RULES.read_text().splitlines():
        t = line.strip()
        if t.startswith("- alert:"):
            name, expr = t.split(":", 1)[1].strip(), None
        elif t.startswith("expr:") and name:
            expr = t.split(":", 1)[1].strip()
        elif t.startswith("severity:") and name:
            out[name] = (expr, t.split(":", 1)[1].strip())
    return out


def evaluations():
    """(alertname, fires) for every alert_rule_test entry of the unit tests."""
    out, name = [], None
    for line in TESTS.read_text().splitlines():
        t = line.strip()
        if t.startswith("alertname:"):
            name = t.split(":", 1)[1].strip()
        elif t.startswith("exp_alerts:") and name:
            out.append((name, t.split(":", 1)[1].strip() != "[]"))
            name = None
    return out


def test_every_alert_tested_firing_and_not_firing():
    alerts = rules()
    assert len(alerts) >= 20
    assert all(expr for expr, _ in alerts.values()), "a rule without an expr line"
    fired = {n for n, f in evaluations() if f}
    quiet = {n for n, f in evaluations() if not f}
    assert set(alerts) - fired == set(), "alerts never shown firing"
    assert set(alerts) - quiet == set(), "alerts never shown not firing"
    for name, (_, severity) in alerts.items():
        assert severity in ("critical", "warning", "info"), name


def test_rules_cover_the_conditions_of_issue_11():
    """The conditions the broker detects, and the health ones the alerts promise, each have a
    rule on the agreed metric names (docs/metrics.md)."""
    exprs = "\n".join(expr for expr, _ in rules().values())
    for rule in ("auth_bruteforce_address", "auth_bruteforce_principal", "denial_spike",
                 "new_address", "new_topic_read", "cert_expiry", "disk_full"):
        assert f'rule="{rule}"' in exprs, rule
    for metric in ("sluice_authentication_failures_total", "sluice_authorization_denials_total",
                   "sluice_certificate_expiry_timestamp_seconds", "sluice_disk_free_bytes",
                   "sluice_disk_total_bytes", "sluice_audit_failing",
                   "sluice_audit_events_dropped_total", "sluice_guard_blocked_addresses",
                   'up{job="sluice"}'):
        assert metric in exprs, metric
