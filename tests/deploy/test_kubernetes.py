"""The Kubernetes manifests in deploy/kubernetes, checked offline (no cluster, no broker): the
kustomization rendered as kustomize renders it; every core resource valid for a pinned
Kubernetes version, every Strimzi and prometheus-operator resource valid against its CRD's
schema kept in deploy/kubernetes/schemas; and the Deployments wired to what the code really
reads (settings, endpoints, ports, the generated users, the alert rules)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.checkout import ROOT
from xbus.consumers.sse.service import StreamSettings
from xbus.core.settings import BusSettings
from xbus.deploy import kafka_metrics_config, prometheus_rule
from xbus.producers.gateway.settings import GatewaySettings

KUSTOMIZATION = ROOT / "deploy" / "kubernetes"
SCHEMAS = KUSTOMIZATION / "schemas"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = KUSTOMIZATION / "monitoring" / "prometheus-rule.yaml"
JMX_EXPORTER_RULES = (
    ROOT / "deploy" / "xbus" / "deploy" / "resources" / "kafka" / "jmx-exporter.yml"
)
KAFKA_METRICS_CONFIG = KUSTOMIZATION / "kafka" / "metrics-config.yaml"
# The oldest Kubernetes release still maintained when these manifests were written.
KUBERNETES_VERSION = "1.33.0"
# Kubernetes' own resource names: a DNS subdomain.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Variables the components read that are not fields of a settings class.
OTHER_VARIABLES = {"XBUS_HOME", "XBUS_POSTGRES_DSN", "PGPASSFILE"}

Resource = dict[str, Any]


def render_kustomization(folder: Path) -> list[Resource]:
    """What ``kubectl kustomize folder`` gives for a kustomization of resource files and a
    namespace (the only fields this one uses)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "namespace", "resources"}
    assert not unknown, f"fields this renderer does not know: {unknown}"
    resources = []
    for name in kustomization["resources"]:
        for resource in yaml.safe_load_all((folder / name).read_text()):
            if resource is not None:
                resource["metadata"]["namespace"] = kustomization["namespace"]
                resources.append(resource)
    return resources


@cache
def rendered() -> tuple[Resource, ...]:
    return tuple(render_kustomization(KUSTOMIZATION))


def _of_kind(kind: str) -> list[Resource]:
    return [r for r in rendered() if r["kind"] == kind]


def _key(resource: Resource) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


# -- validation ---------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused where it lists the known ones, as the API server
    does with `kubectl apply --validate=strict` (a misspelt field is an error, not dropped)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in strict
        and "additionalProperties" not in strict
        and not strict.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of every served version of the kept CRDs."""
    found = {}
    for path in sorted(SCHEMAS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if crd is None:
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if version["served"]:
                    api_version = f"{spec['group']}/{version['name']}"
                    found[api_version, spec["names"]["kind"]] = _strict(
                        version["schema"]["openAPIV3Schema"]
                    )
    return found


def problems_of(resource: Resource) -> list[str]:
    """What is wrong with ``resource`` for the API server: its name, then its schema (core
    kinds from kubernetes-validate, custom kinds from the kept CRDs)."""
    problems = []
    name = resource.get("metadata", {}).get("name", "")
    if not DNS_SUBDOMAIN.match(name) or len(name) > 253:
        problems.append(f"{name!r} is not a Kubernetes resource name")
    schema = crd_schemas().get((resource.get("apiVersion", ""), resource.get("kind", "")))
    if schema is not None:
        validator = jsonschema.Draft7Validator(schema)
        problems += [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(resource)
        ]
        return problems
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        problems.append(f"{'.'.join(map(str, exc.path))}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError:
        problems.append(
            f"no schema for {resource.get('apiVersion')} {resource.get('kind')}: neither a "
            f"Kubernetes {KUBERNETES_VERSION} kind nor a CRD in deploy/kubernetes/schemas"
        )
    return problems


def test_the_kept_crds_cover_strimzi_and_prometheus_operator() -> None:
    assert {kind for _, kind in crd_schemas()} == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "PodMonitor",
        "PrometheusRule",
    }


@pytest.mark.parametrize("resource", rendered(), ids=lambda r: "/".join(_key(r)))
def test_every_manifest_is_valid(resource: Resource) -> None:
    assert problems_of(resource) == []


def _container(resource: Resource) -> dict[str, Any]:
    containers: list[dict[str, Any]] = resource["spec"]["template"]["spec"]["containers"]
    return containers[0]


def _broken_port(r: Resource) -> None:
    _container(r)["ports"][0]["containerPort"] = "metrics"


def _misspelt_probe(r: Resource) -> None:
    _container(r)["livenessProbe"]["httpGets"] = _container(r)["livenessProbe"].pop("httpGet")


def _topic_partitions_in_words(r: Resource) -> None:
    r["spec"]["partitions"] = "twelve"


def _unknown_acl_operation(r: Resource) -> None:
    r["spec"]["authorization"]["acls"][0]["operations"] = ["Steal"]


def _misspelt_authorization(r: Resource) -> None:
    r["spec"]["authorisation"] = r["spec"].pop("authorization")


def _rule_without_groups(r: Resource) -> None:
    r["spec"]["groups"] = [{"rules": []}]  # a group needs its name


def _unknown_metrics_type(r: Resource) -> None:
    r["spec"]["kafka"]["metricsConfig"]["type"] = "jmxExporter"


def _misspelt_relabelings(r: Resource) -> None:
    endpoint = r["spec"]["podMetricsEndpoints"][0]
    endpoint["relabellings"] = endpoint.pop("relabelings")


def _underscore_in_name(r: Resource) -> None:
    r["metadata"]["name"] = "gov.health.vaccination_record"


def _unknown_kind(r: Resource) -> None:
    r["kind"] = "KafkaTopics"


BREAKAGES = [
    ("Deployment", _broken_port, "containerPort"),
    ("Deployment", _misspelt_probe, "httpGets"),
    ("KafkaTopic", _topic_partitions_in_words, "partitions"),
    ("KafkaUser", _unknown_acl_operation, "Steal"),
    ("KafkaUser", _misspelt_authorization, "authorisation"),
    ("PrometheusRule", _rule_without_groups, "name"),
    ("Kafka", _unknown_metrics_type, "jmxExporter"),
    ("PodMonitor", _misspelt_relabelings, "relabellings"),
    ("KafkaTopic", _underscore_in_name, "not a Kubernetes resource name"),
    ("KafkaTopic", _unknown_kind, "no schema"),
]


@pytest.mark.parametrize(
    ("kind", "breakage", "said"), BREAKAGES, ids=[b.__name__.strip("_") for _, b, _ in BREAKAGES]
)
def test_a_broken_manifest_is_refused(kind: str, breakage: Any, said: str) -> None:
    broken = copy.deepcopy(_of_kind(kind)[-1])
    breakage(broken)
    problems = problems_of(broken)
    assert problems, f"{breakage.__name__} went through"
    assert said in " ".join(problems)


def test_kubectl_kustomize_renders_what_the_tests_check() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the resources-only rendering above stands alone")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, check=True
    )
    theirs = {_key(r): r for r in yaml.safe_load_all(result.stdout)}
    ours = {_key(r): r for r in rendered()}
    assert theirs == ours


# -- wiring -------------------------------------------------------------------------------------


def _deployments() -> list[Resource]:
    return _of_kind("Deployment")


def _pod(deployment: Resource) -> dict[str, Any]:
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def _containers(deployment: Resource) -> list[dict[str, Any]]:
    pod = _pod(deployment)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: the ConfigMaps it takes whole, then its own."""
    config_maps = {c["metadata"]["name"]: c["data"] for c in _of_kind("ConfigMap")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def _settings_variables() -> set[str]:
    variables = set(OTHER_VARIABLES)
    for settings in (BusSettings, GatewaySettings, StreamSettings):
        prefix = str(settings.model_config.get("env_prefix", ""))
        variables |= {f"{prefix}{field}".upper() for field in settings.model_fields}
    return variables


def test_the_components_are_deployed() -> None:
    commands = {" ".join(_container(d)["args"][:3]) for d in _deployments()}
    assert commands == {
        "run engine --metrics-port",
        "run gateway",
        "run sse",
        "run connector webhook",
        "run connector postgres",
        "run connector file",
    }


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_every_variable_is_a_setting_the_code_reads(deployment: Resource) -> None:
    known = _settings_variables()
    for container in _containers(deployment):
        assert set(_env(container)) - known == set()


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_every_file_a_setting_names_is_mounted(deployment: Resource) -> None:
    container = _container(deployment)
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    files = {
        k: v
        for k, v in _env(container).items()
        if k.endswith(("_FILE", "_LOCATION")) or k == "PGPASSFILE"
    }
    args = container["args"]
    if "--secret-file" in args:
        files["--secret-file"] = args[args.index("--secret-file") + 1]
    assert files, "every component reads its Kafka password from a file"
    for setting, path in files.items():
        assert str(Path(path).parent) in mounts, f"{setting}={path} is not on a mounted volume"


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_every_component_logs_in_as_its_generated_kafka_user(deployment: Resource) -> None:
    container = _container(deployment)
    user = _env(container)["XBUS_SASL_USERNAME"]
    assert ("KafkaUser", user) in {_key(u) for u in _of_kind("KafkaUser")}
    password = _env(container)["XBUS_SASL_PASSWORD_FILE"]
    (mount,) = [
        m for m in container["volumeMounts"] if m["mountPath"] == str(Path(password).parent)
    ]
    (volume,) = [v for v in _pod(deployment)["volumes"] if v["name"] == mount["name"]]
    # The User Operator keeps each user's password in a Secret of the user's name.
    assert volume["secret"]["secretName"] == user


def _metrics_port(container: dict[str, Any]) -> int:
    args, env = container["args"], _env(container)
    if "--metrics-port" in args:
        return int(args[args.index("--metrics-port") + 1])
    (variable,) = [k for k in env if k.endswith("_METRICS_PORT")]
    return int(env[variable])


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_probes_ask_endpoints_the_component_serves(deployment: Resource) -> None:
    container = _container(deployment)
    assert _port(container, "metrics") == _metrics_port(container)
    # /metrics is served on the metrics port by every component (xbus.core.metrics);
    # /healthz by the gateway and the live stream on their HTTP port, nothing else.
    served = {"metrics": {"/metrics"}}
    if "http" in {p["name"] for p in container["ports"]}:
        served["http"] = {"/healthz"}
        env = _env(container)
        (variable,) = [k for k in env if k.endswith("_PORT") and "METRICS" not in k]
        assert _port(container, "http") == int(env[variable])
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] in served[get["port"]], f"{probe} asks {get}"


@pytest.mark.parametrize("deployment", _deployments(), ids=lambda d: d["metadata"]["name"])
def test_every_container_runs_as_a_user_on_a_read_only_root(deployment: Resource) -> None:
    pod = _pod(deployment)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in _containers(deployment):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]


def test_services_reach_the_http_port_of_the_gateway_and_the_stream() -> None:
    deployments = {d["metadata"]["name"]: d for d in _deployments()}
    services = {s["metadata"]["name"]: s for s in _of_kind("Service")}
    assert set(services) == {"xbus-gateway", "xbus-sse"}
    for name, service in services.items():
        pod = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod.items()
        (port,) = service["spec"]["ports"]
        assert port["targetPort"] in {p["name"] for p in _container(deployments[name])["ports"]}


def _pod_monitor(name: str) -> Resource:
    (monitor,) = [m for m in _of_kind("PodMonitor") if m["metadata"]["name"] == name]
    return monitor


def test_the_pod_monitor_scrapes_every_component() -> None:
    monitor = _pod_monitor("xbus")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for deployment in _deployments():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        # XbusComponentDown watches jobs named xbus*: the job is this label's value.
        assert labels[monitor["spec"]["jobLabel"]].startswith("xbus")
        assert endpoint["port"] in {p["name"] for p in _container(deployment)["ports"]}


def _broker_pod_labels() -> list[dict[str, str]]:
    """The labels Strimzi (1.2, KafkaPool) gives the pods of each node pool of each Kafka."""
    return [
        {
            "strimzi.io/cluster": kafka["metadata"]["name"],
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": f"{kafka['metadata']['name']}-kafka",
            "strimzi.io/component-type": "kafka",
            "strimzi.io/pool-name": pool["metadata"]["name"],
            "app.kubernetes.io/name": "kafka",
            "app.kubernetes.io/instance": kafka["metadata"]["name"],
            "app.kubernetes.io/part-of": f"strimzi-{kafka['metadata']['name']}",
        }
        for kafka in _of_kind("Kafka")
        for pool in _of_kind("KafkaNodePool")
        if pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    ]


def _component_down_jobs() -> re.Pattern[str]:
    """The jobs the alert XbusComponentDown watches (its `up{job=~"..."}`)."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    (expr,) = [
        r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "XbusComponentDown"
    ]
    found = re.search(r'job=~"([^"]+)"', expr)
    assert found, f"XbusComponentDown selects no job: {expr}"
    return re.compile(found[1])


def test_the_brokers_serve_their_metrics() -> None:
    (kafka,) = _of_kind("Kafka")
    metrics = kafka["spec"]["kafka"]["metricsConfig"]
    # The CRD's own rule (a CEL validation, which jsonschema does not run): the JMX exporter
    # needs its rules from a ConfigMap.
    assert metrics["type"] == "jmxPrometheusExporter"
    reference = metrics["valueFrom"]["configMapKeyRef"]
    config_maps = {c["metadata"]["name"]: c for c in _of_kind("ConfigMap")}
    assert reference["name"] in config_maps, "the rules' ConfigMap is not in the kustomization"
    rules = config_maps[reference["name"]]["data"][reference["key"]]
    assert rules == JMX_EXPORTER_RULES.read_text(), (
        "the brokers on Kubernetes would export other metrics than the local one"
    )


def test_a_pod_monitor_scrapes_the_brokers_as_job_kafka() -> None:
    monitor = _pod_monitor("xbus-kafka")
    selector = monitor["spec"]["selector"]["matchLabels"]
    pods = _broker_pod_labels()
    assert pods, "no KafkaNodePool of the Kafka"
    for labels in pods:
        assert selector.items() <= labels.items()
        # Not scraped twice: the components' monitor leaves the brokers alone.
        assert not _pod_monitor("xbus")["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # Strimzi's other pods of the cluster that serve a tcp-prometheus port.
        for other in ("kafka-exporter", "cruise-control"):
            theirs = {**labels, "strimzi.io/name": f"{labels['strimzi.io/cluster']}-{other}"}
            assert not selector.items() <= theirs.items(), f"{other} would be job kafka"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "tcp-prometheus"  # Strimzi's MetricsModel: port 9404
    (job,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert "sourceLabels" not in job and job.get("action", "replace") == "replace"
    assert job["replacement"] == "kafka"  # as the local Prometheus names the broker's job
    assert _component_down_jobs().fullmatch(job["replacement"])


# -- one source of truth ------------------------------------------------------------------------


def test_the_prometheus_rule_holds_exactly_the_groups_of_alerts_yml() -> None:
    (rule,) = _of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_the_committed_prometheus_rule_is_a_fresh_generation() -> None:
    rules_file = ALERTS.relative_to(ROOT)
    fresh = prometheus_rule.render(prometheus_rule.prometheus_rule(ALERTS), rules_file)
    assert PROMETHEUS_RULE.read_text() == fresh, (
        "deploy/kubernetes/monitoring/prometheus-rule.yaml is stale: `make manifests`"
    )


def test_the_committed_kafka_metrics_config_is_a_fresh_generation() -> None:
    rules_file = JMX_EXPORTER_RULES.relative_to(ROOT)
    config_map = kafka_metrics_config.kafka_metrics_config(JMX_EXPORTER_RULES)
    assert KAFKA_METRICS_CONFIG.read_text() == kafka_metrics_config.render(
        config_map, rules_file
    ), "deploy/kubernetes/kafka/metrics-config.yaml is stale: `make manifests`"
