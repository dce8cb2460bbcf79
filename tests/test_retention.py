"""deploy/ for the data subject's lifecycle: the retention the deploy files give the topics
(deploy/README.md, Retention), and the alert on a rejected request. The Compose
topic-creation script is run for real with `bash`, against a stand-in `rpk` that records
what it is asked, and must create every configured topic with its retention."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
WEEK_MS = 7 * 86400 * 1000


def test_compose_creates_every_topic_with_its_recommended_retention(tmp_path: Path) -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    service = compose["services"]["create-topics"]
    script = service["command"][0].replace("$$", "$")  # Compose's escape of a literal $
    calls = tmp_path / "calls"
    rpk = tmp_path / "rpk"
    # `describe` fails (no such topic yet), `create` records its arguments.
    rpk.write_text(f'#!/bin/sh\n[ "$2" = describe ] && exit 1\necho "$@" >> {calls}\n')
    rpk.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    subprocess.run([*service["entrypoint"], script], env=env, check=True, timeout=30)
    created = {}
    for line in calls.read_text().splitlines():
        args = line.split()
        assert args[:2] == ["topic", "create"] and "-p" in args, line
        created[args[2]] = int(args[args.index("-c") + 1].removeprefix("retention.ms="))
    kafka = yaml.safe_load((DEPLOY / "config.yaml").read_text())["kafka"]
    topics = kafka["topics"]
    week = [kafka["input_topic"], *(v for k, v in topics.items() if k != "control_receipts")]
    assert created == {
        **dict.fromkeys(week, WEEK_MS),
        kafka["control_topic"]: 400 * 86400 * 1000,
        topics["control_receipts"]: -1,
    }


def test_a_rejected_data_subjects_request_raises_a_critical_alert() -> None:
    # That the metric is on a running worker's /metrics is checked for every alert in
    # test_deploy.py (test_every_metric_the_alerts_and_dashboard_use_exists...).
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (rule,) = [
        r
        for group in rules["groups"]
        for r in group["rules"]
        if r["alert"] == "AudienceflowControlRequestRejected"
    ]
    assert "audienceflow_control_dead_lettered_total" in rule["expr"]
    assert rule["labels"]["severity"] == "critical"
