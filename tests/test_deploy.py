"""Static checks of deploy/: the Dockerfile, Compose file and Kubernetes manifests agree
with each other, with pyproject.toml and with the example config. The shell snippets in the
manifests are run for real with `sh`."""

import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CONFIG_PATH = "/etc/audienceflow/config.yaml"


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _config() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "config.yaml").read_text())


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            instr, _, args = line.strip().partition(" ")
            pairs.append((instr.upper(), args.strip()))
    return pairs


def _args(instr: str) -> list[str]:
    return [args for name, args in _dockerfile() if name == instr]


def _dockerignored(path: str) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; `!` re-includes."""
    patterns = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    ignored = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def _leaf_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        keys |= _leaf_keys(value, path + ".") if isinstance(value, dict) else {path}
    return keys


# Dockerfile


def test_dockerfile_has_build_and_runtime_stages_on_a_glibc_python_311_base() -> None:
    stages = _args("FROM")
    assert len(stages) >= 2
    base = dict(arg.split("=", 1) for arg in _args("ARG") if "=" in arg)["PYTHON_IMAGE"]
    assert base == "python:3.11-slim-bookworm"
    assert all(stage.startswith("${PYTHON_IMAGE}") for stage in stages)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    user = _args("USER")[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dockerfile_installs_dependencies_from_the_lock_file() -> None:
    runs = " ".join(_args("RUN"))
    assert "uv sync --frozen --no-dev" in runs
    first_copy = _args("COPY")[0].split()
    assert {"pyproject.toml", "uv.lock"} <= set(first_copy)


def test_dockerfile_entrypoint_is_the_project_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = json.loads(_args("ENTRYPOINT")[-1])
    assert entrypoint == ["audienceflow"]
    assert entrypoint[0] in scripts
    assert json.loads(_args("CMD")[-1]) == ["run", "--config", CONFIG_PATH]


def test_dockerfile_exposes_metrics_and_declares_the_recovery_volume() -> None:
    config = _config()
    assert str(config["metrics"]["port"]) in " ".join(_args("EXPOSE")).split()
    assert config["recovery"]["dir"] in json.loads(_args("VOLUME")[-1])


def test_dockerfile_copies_files_that_exist_and_are_in_the_build_context() -> None:
    for args in _args("COPY"):
        words = args.split()
        if any(w.startswith("--from") for w in words):
            continue
        for source in words[:-1]:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repo"
            assert not _dockerignored(source), f"COPY {source}: excluded by the dockerignore"


# Compose


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())


def test_compose_has_broker_topics_redis_and_worker() -> None:
    assert set(_compose()["services"]) == {
        "redpanda",
        "create-topics",
        "redis",
        "worker",
        "prometheus",
        "grafana",
    }


def test_compose_worker_builds_from_the_deploy_dockerfile() -> None:
    build = _compose()["services"]["worker"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_worker_points_at_the_compose_services() -> None:
    worker = _compose()["services"]["worker"]
    assert worker["environment"] == {
        "AUDIENCEFLOW_KAFKA__BROKERS": "redpanda:9092",
        "AUDIENCEFLOW_REDIS__URL": "redis://:${REDIS_PASSWORD:-change-me}@redis:6379/0",
        "AUDIENCEFLOW_METRICS__HOST": "0.0.0.0",
        "AUDIENCEFLOW_SNAPSHOT_KEY": "${AUDIENCEFLOW_SNAPSHOT_KEY:-}",
        # compose refuses to start without it, as the worker refuses to hash without a salt
        "AUDIENCEFLOW_PII_SALT": "${AUDIENCEFLOW_PII_SALT:?set AUDIENCEFLOW_PII_SALT to a secret salt}",  # noqa: E501
    }
    assert f"./config.yaml:{CONFIG_PATH}:ro" in worker["volumes"]
    assert f"recovery:{_config()['recovery']['dir']}" in worker["volumes"]
    assert f"127.0.0.1:{_config()['metrics']['port']}:9464" in worker["ports"]


def test_compose_worker_waits_for_healthy_dependencies() -> None:
    services = _compose()["services"]
    depends = services["worker"]["depends_on"]
    assert depends["create-topics"]["condition"] == "service_completed_successfully"
    for name in ("redpanda", "redis"):
        assert depends[name]["condition"] == "service_healthy"
        assert "healthcheck" in services[name]
    assert services["create-topics"]["depends_on"]["redpanda"]["condition"] == "service_healthy"


def test_compose_worker_is_healthy_on_ready_of_its_metrics_port() -> None:
    worker = _compose()["services"]["worker"]
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{_config()['metrics']['port']}/ready" in probe


def test_compose_creates_exactly_the_configured_topics() -> None:
    kafka = _config()["kafka"]
    wanted = {kafka["input_topic"], kafka["control_topic"], *kafka["topics"].values()}
    script = " ".join(_compose()["services"]["create-topics"]["command"])
    assert "rpk topic create" in script
    assert set(re.findall(r"\bclickstream\b|\baudienceflow\.[\w-]+", script)) == wanted


def test_compose_worker_initialises_recovery_then_runs_the_cli() -> None:
    script = _compose()["services"]["worker"]["command"][0]
    partitions = _config()["recovery"]["partitions"]
    assert f'python -m bytewax.recovery "$$dir" {partitions}' in script
    assert script.strip().splitlines()[-1] == f"exec audienceflow run --config {CONFIG_PATH}"


# Kubernetes


def _k8s(kind: str) -> list[dict[str, Any]]:
    docs = [doc for path in sorted(K8S.glob("*.yaml")) for doc in _yaml_docs(path)]
    return [doc for doc in docs if doc["kind"] == kind]


def _statefulset() -> dict[str, Any]:
    (sts,) = _k8s("StatefulSet")
    return sts


def _containers(sts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = sts["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def _run_sh(container: dict[str, Any], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = container["command"] + container["args"]
    assert command[0] == "/bin/sh"
    full_env = {**os.environ, **_env(container), **env}
    return subprocess.run(
        ["sh", *command[1:]], env=full_env, capture_output=True, text=True, timeout=60
    )


def test_every_manifest_has_api_version_kind_and_name() -> None:
    paths = sorted(K8S.glob("*.yaml"))
    assert {p.name for p in paths} >= {"configmap.yaml", "statefulset.yaml", "service.yaml"}
    for path in paths:
        for doc in _yaml_docs(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            assert doc.get("metadata", {}).get("name"), path


def test_statefulset_selects_its_pods_through_a_headless_service() -> None:
    sts = _statefulset()
    assert (sts["apiVersion"], sts["metadata"]["name"]) == ("apps/v1", "audienceflow")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    services = {s["metadata"]["name"]: s for s in _k8s("Service")}
    headless = services[sts["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["selector"].items() <= labels.items()
    assert [p["port"] for p in headless["spec"]["ports"]] == [9999]


def test_replica_count_agrees_everywhere() -> None:
    sts = _statefulset()
    containers = _containers(sts)
    for name in ("hostfile", "recovery-partitions", "worker"):
        assert _env(containers[name])["BYTEWAX_REPLICAS"] == str(sts["spec"]["replicas"])
    for name in ("hostfile", "worker"):
        assert _env(containers[name])["BYTEWAX_STATEFULSET_NAME"] == sts["metadata"]["name"]
    assert _env(containers["hostfile"])["HEADLESS_SERVICE"] == sts["spec"]["serviceName"]


def test_hostfile_init_container_lists_every_replica(tmp_path: Path) -> None:
    sts = _statefulset()
    hostfile = tmp_path / "hostfile.txt"
    result = _run_sh(_containers(sts)["hostfile"], {"BYTEWAX_HOSTFILE_PATH": str(hostfile)})
    assert result.returncode == 0, result.stderr
    replicas = sts["spec"]["replicas"]
    assert hostfile.read_text().splitlines() == [
        f"audienceflow-{i}.audienceflow-headless:9999" for i in range(replicas)
    ]


def test_hostfile_is_shared_between_init_and_worker() -> None:
    containers = _containers(_statefulset())
    path = _env(containers["worker"])["BYTEWAX_HOSTFILE_PATH"]
    assert path == _env(containers["hostfile"])["BYTEWAX_HOSTFILE_PATH"]
    for name in ("hostfile", "worker"):
        mounts = {m["name"]: m["mountPath"] for m in containers[name]["volumeMounts"]}
        assert mounts["hostfile"] == str(Path(path).parent)


def test_worker_runs_the_cli_with_its_ordinal_as_process_id(tmp_path: Path) -> None:
    fake = tmp_path / "audienceflow"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    worker = _containers(_statefulset())["worker"]
    env = {"PATH": f"{tmp_path}:{os.environ['PATH']}", "HOSTNAME": "audienceflow-2"}
    result = _run_sh(worker, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "run", "--config", CONFIG_PATH, "--process-id", "2",
        "--addresses-file", "/etc/bytewax/hostfile.txt",
    ]  # fmt: skip


def test_recovery_partitions_are_split_across_pods_exactly_once(tmp_path: Path) -> None:
    sts = _statefulset()
    init = _containers(sts)["recovery-partitions"]
    partitions = int(_env(init)["RECOVERY_PARTITIONS"])
    assert partitions == _config()["recovery"]["partitions"]
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"  # a python with bytewax
    held: list[str] = []
    for ordinal in range(sts["spec"]["replicas"]):
        pod_dir = tmp_path / f"pod-{ordinal}"
        pod_dir.mkdir()
        env = {"RECOVERY_DIR": str(pod_dir), "HOSTNAME": f"audienceflow-{ordinal}", "PATH": path}
        for _ in range(2):  # a restarted pod must keep what it has
            result = _run_sh(init, env)
            assert result.returncode == 0, result.stderr
        held += sorted(p.name for p in pod_dir.iterdir())
    assert sorted(held) == sorted(f"part-{i}.sqlite3" for i in range(partitions))


def test_worker_mounts_recovery_claim_config_and_probes_metrics() -> None:
    sts = _statefulset()
    worker = _containers(sts)["worker"]
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == _config()["recovery"]["dir"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    (configmap,) = _k8s("ConfigMap")
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert Path(mounts["config"]) / "config.yaml" == Path(CONFIG_PATH)
    ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
    probe_port = worker["readinessProbe"]["httpGet"]["port"]
    assert ports[probe_port] == _config()["metrics"]["port"]
    # /metrics answers before the cluster has formed: readiness is /ready (test_readiness.py).
    assert worker["readinessProbe"]["httpGet"]["path"] == "/ready"
    metrics = next(s for s in _k8s("Service") if s["metadata"]["name"] == "audienceflow-metrics")
    assert ports[metrics["spec"]["ports"][0]["targetPort"]] == metrics["spec"]["ports"][0]["port"]


def test_every_container_requests_resources() -> None:
    for name, container in _containers(_statefulset()).items():
        assert container["resources"]["requests"], name


def test_configmap_config_has_every_key_of_the_example_config() -> None:
    (configmap,) = _k8s("ConfigMap")
    in_cluster = yaml.safe_load(configmap["data"]["config.yaml"])
    assert _leaf_keys(_config()) <= _leaf_keys(in_cluster)


@pytest.mark.parametrize("source", ["example", "configmap"])
def test_config_loader_accepts_the_deploy_configs(source: str, tmp_path: Path) -> None:
    from audienceflow.flows.cli import main

    path = DEPLOY / "config.yaml"
    if source == "configmap":
        (configmap,) = _k8s("ConfigMap")
        path = tmp_path / "config.yaml"
        path.write_text(configmap["data"]["config.yaml"])
    assert main(["check-config", str(path)]) == 0


def test_manifests_validate_against_the_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="dev extra kubernetes-validate")
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _yaml_docs(path):
            kv.validate(doc, kv.latest_version(), strict=True)


def test_readme_documents_compose_kubernetes_and_manual_runs() -> None:
    text = (DEPLOY / "README.md").read_text()
    for needle in (
        "docker compose -f deploy/docker-compose.yaml up",
        "kubectl apply -f deploy/k8s/",
        "--process-id I --addresses",
        "python -m bytewax.recovery",
    ):
        assert needle in text


def test_the_compose_command_in_the_readme_sets_every_variable_compose_requires() -> None:
    """``${X:?message}`` makes Compose refuse to start without X: the documented command
    must set each, or a reader who copies it gets an error instead of a worker."""
    import re

    required = set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "docker-compose.yaml").read_text()))
    assert required  # the salt at least: the check cannot pass by finding none
    text = (DEPLOY / "README.md").read_text()
    block = text[: text.index("docker compose -f deploy/docker-compose.yaml up")]
    command = block[block.rindex("```sh") :]
    assert {v for v in required if f"{v}=" not in command} == set()


# Security (issue 10): localhost-only ports, Redis AUTH, metrics host, cluster port policy


def test_compose_publishes_every_port_on_localhost_only() -> None:
    published = [
        (name, port)
        for name, svc in _compose()["services"].items()
        for port in svc.get("ports", [])
    ]
    assert len(published) >= 5
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_redis_requires_a_password_from_the_environment() -> None:
    services = _compose()["services"]
    redis = services["redis"]
    assert redis["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD:-change-me}"
    assert '--requirepass "$$REDIS_PASSWORD"' in " ".join(redis["command"])
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    url = services["worker"]["environment"]["AUDIENCEFLOW_REDIS__URL"]
    assert url.startswith("redis://:${REDIS_PASSWORD")  # the same variable, no literal secret
    for svc in services.values():
        for key, value in (svc.get("environment") or {}).items():
            if re.search(r"PASSWORD|KEY|SECRET", key):
                assert str(value).startswith("${"), (key, value)


def test_worker_metrics_listen_on_the_pod_ip_in_kubernetes() -> None:
    worker = _containers(_statefulset())["worker"]
    env = {e["name"]: e for e in worker["env"]}
    assert env["AUDIENCEFLOW_METRICS__HOST"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    for name in ("AUDIENCEFLOW_SNAPSHOT_KEY", "REDIS_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "audienceflow-secrets"
    assert "$(REDIS_PASSWORD)@" in env["AUDIENCEFLOW_REDIS__URL"]["value"]


def test_metrics_default_to_loopback_and_follow_metrics_host() -> None:
    from audienceflow.flows.worker import metrics_host
    from audienceflow.operators.settings import Settings

    opts: Any = object()
    assert metrics_host(Settings.load(None, environ={}), opts) == "127.0.0.1"
    chosen = Settings.load(None, environ={"AUDIENCEFLOW_METRICS__HOST": "10.1.2.3"})
    assert metrics_host(chosen, opts) == "10.1.2.3"


def test_network_policy_opens_the_cluster_port_to_the_workers_own_pods_only() -> None:
    (policy,) = _k8s("NetworkPolicy")
    sts = _statefulset()
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"] == labels
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    ports = {p["name"]: p["containerPort"] for p in _containers(sts)["worker"]["ports"]}
    rules = {r["ports"][0]["port"]: r["from"] for r in policy["spec"]["ingress"]}
    assert set(rules) == {ports["cluster"], ports["metrics"]}  # nothing else is let in
    assert rules[ports["cluster"]] == [{"podSelector": {"matchLabels": labels}}]


# Monitoring: Prometheus alerts and the Grafana dashboard, wired into compose

ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "audienceflow.json"


def _alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def monitored_metric_names() -> set[str]:
    """Every audienceflow_* series the alert rules and the dashboard query."""
    exprs = [r["expr"] for r in _alert_rules()] + _dashboard_exprs()
    return {m for e in exprs for m in re.findall(r"\baudienceflow_[a-z0-9_]+", e)}


def test_alert_rules_cover_lag_dead_letters_latency_redis_snapshots_and_drift() -> None:
    rules = {r["alert"]: r for r in _alert_rules()}
    wanted = {
        "AudienceflowConsumerLagGrowing": "audienceflow_input_lag",
        "AudienceflowDeadLetterRate": "audienceflow_dead_lettered_total",
        "AudienceflowP99LatencyHigh": "audienceflow_end_to_end_latency_seconds_bucket",
        "AudienceflowRedisErrors": "audienceflow_redis_errors_total",
        "AudienceflowSnapshotStale": "audienceflow_last_snapshot_timestamp_seconds",
        "AudienceflowDrift": "audienceflow_drift_total",
    }
    for name, metric in wanted.items():
        assert metric in rules[name]["expr"], name
    for rule in rules.values():
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_compose_mounts_prometheus_rules_and_grafana_provisioning() -> None:
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            assert (DEPLOY / volume.split(":")[0]).exists(), volume
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    mounted = {v.split(":")[1] for v in services["prometheus"]["volumes"]}
    assert set(prom["rule_files"]) <= mounted
    (job,) = prom["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"worker:{_config()['metrics']['port']}"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/audienceflow.yaml").read_text()
    )
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert grafana_mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    source = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"][0]
    dash = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dash["panels"]} == {source["uid"]}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_readme_has_a_security_section_naming_what_to_set() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Security", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "AUDIENCEFLOW_SNAPSHOT_KEY",
        "metrics.host",
        "requirepass",
        "NetworkPolicy",
        "not trusted",
    ):
        assert needle in section, needle


def _started_worker_metrics(kafka_broker: str, redis_server: str, tmp_path: Path, name: str) -> str:
    """/metrics of a worker just started (topics prefixed ``name``), then stopped."""
    import urllib.request

    import servers
    from workers import Worker, poll, write_config

    port = servers.free_port()
    servers.create_topics(kafka_broker, [f"{name}.in"], partitions=1)  # read, never created
    cfg = write_config(
        tmp_path / "w.yaml",
        kafka={
            "brokers": kafka_broker,
            "input_topic": f"{name}.in",
            "control_topic": f"{name}.control",
            "topics": {k: f"{name}.{k}" for k in ("segment_changes", "actions", "sessions")}
            | {"dead_letters": f"{name}.dead", "identities": None, "control_receipts": None},
            "partitions": 1,
        },
        redis={"url": redis_server, "key_prefix": f"{name}:profile:"},
        recovery={"dir": str(tmp_path / "recovery")},
        metrics={"port": port},
        privacy={"salt": "test-salt-not-secret"},
    )
    worker = Worker(cfg, tmp_path / "worker.log")

    def get(path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return None

    try:
        text = poll(lambda: get("/metrics"), 60, "the worker's /metrics", worker.log)
    finally:
        worker.process.send_signal(signal.SIGTERM)
        worker.wait(30)
    return text


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_every_metric_the_alerts_and_dashboard_use_exists_on_a_running_worker(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    text = _started_worker_metrics(kafka_broker, redis_server, tmp_path, "monitor")
    exposed: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        exposed.add(name)
        if kind == "histogram":
            exposed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter" and not name.endswith("_total"):
            exposed.add(f"{name}_total")
    used = monitored_metric_names()
    assert len(used) >= 12
    assert not used - exposed, f"not on /metrics: {sorted(used - exposed)}"


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_every_counter_an_alert_rates_has_its_known_series_at_zero_from_the_start(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """rate()/increase() ignore a series' first sample: a labelled counter that appears
    at its first increment (already 1) hides that increment, so the first rejected
    deletion request never fired the critical AudienceflowControlRequestRejected."""
    text = _started_worker_metrics(kafka_broker, redis_server, tmp_path, "zeroed")
    rated = {
        m
        for r in _alert_rules()
        for m in re.findall(r"\b(?:rate|increase)\(\s*(audienceflow_[a-z0-9_]+)", r["expr"])
    }
    assert "audienceflow_control_dead_lettered_total" in rated
    samples = dict(re.findall(r"^(audienceflow_\S+) (\S+)$", text, re.MULTILINE))
    for name in sorted(rated):
        series = {k: v for k, v in samples.items() if re.fullmatch(rf"{name}(\{{.*\}})?", k)}
        assert series, f"{name}: no series before its first increment"
        assert set(series.values()) == {"0.0"}, series
    for series in (
        'audienceflow_control_dead_lettered_total{reason="bad_control"}',
        'audienceflow_dead_lettered_total{reason="late_event"}',
        'audienceflow_drift_total{signal="intent_error"}',
        'audienceflow_redis_errors_total{error="ConnectionError"}',
        'audienceflow_control_receipts_total{status="done",type="delete"}',
        'audienceflow_control_receipts_total{status="not_found",type="delete_and_suppress"}',
    ):
        assert samples.get(series) == "0.0", series


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_snapshot_age_mark_moves_on_a_worker_without_recovery(
    kafka_broker: str, redis_server: str, tmp_path: Path
) -> None:
    """AudienceflowSnapshotStale is time() - the mark > 300: a mark left at 0 by a worker
    without ``recovery.dir`` fired it forever. Epochs complete there too; the mark says so."""
    import servers
    from workers import Worker, metric, poll, write_config

    port = servers.free_port()
    servers.create_topics(kafka_broker, ["norecovery.in"], partitions=1)
    cfg = write_config(
        tmp_path / "w.yaml",
        kafka={
            "brokers": kafka_broker,
            "input_topic": "norecovery.in",
            "control_topic": None,
            "topics": {k: f"norecovery.{k}" for k in ("segment_changes", "actions", "sessions")}
            | {"dead_letters": "norecovery.dead", "identities": None, "control_receipts": None},
            "partitions": 1,
        },
        recovery={"snapshot_interval": "1s"},  # the epoch length; no dir: no recovery
        metrics={"port": port},
    )
    worker = Worker(cfg, tmp_path / "worker.log")
    try:
        poll(
            lambda: (metric(port, "audienceflow_last_snapshot_timestamp_seconds") or 0) > 0,
            60,
            "a snapshot-age mark above 0",
            worker.log,
        )
    finally:
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
