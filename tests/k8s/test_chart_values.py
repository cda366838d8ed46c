"""What the chart renders for each option, and what values.schema.json refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.k8s.chart import CHART, COMBINATIONS, FULLNAME, env_of, find, helm, one, render

pytestmark = pytest.mark.timeout(120)
WORKERS = f"{FULLNAME}-worker-default"
QM_SERVICE = f"{FULLNAME}-queue-manager"


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = doc["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def test_hpa_targets_worker_deployment_with_workers_wanted(tmp_path: Path) -> None:
    """The HPA scales the pool's Deployment on the External metric alpcrun_workers_wanted."""
    docs = render(
        {"workerDefaults": {"autoscaling": {"enabled": True, "maxReplicas": 7}}}, tmp_path
    )
    hpa = one(docs, "HorizontalPodAutoscaler", WORKERS)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": WORKERS,
    }
    one(docs, "Deployment", WORKERS)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 7)
    [metric] = spec["metrics"]
    assert metric["type"] == "External"
    # Only this release's series: Prometheus labels them with the queue manager's Service.
    assert metric["external"]["metric"] == {
        "name": "alpcrun_workers_wanted",
        "selector": {"matchLabels": {"service": QM_SERVICE}},
    }
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    # The HPA owns the replica count: the Deployment must not fight it on upgrades.
    assert "replicas" not in one(docs, "Deployment", WORKERS)["spec"]


def test_hpa_on_queue_depth_per_replica(tmp_path: Path) -> None:
    """metric: queueDepth targets alpcrun_queue_depth at N queued tasks per replica."""
    docs = render(COMBINATIONS["hpa-queue-depth"], tmp_path)
    [metric] = one(docs, "HorizontalPodAutoscaler", WORKERS)["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] == "alpcrun_queue_depth"
    assert metric["external"]["target"]["averageValue"] == "100"


def test_hpa_for_one_application(tmp_path: Path) -> None:
    """appId narrows the metric to the per-session series with that app_id label."""
    docs = render(COMBINATIONS["hpa-workers-wanted-app"], tmp_path)
    [metric] = one(docs, "HorizontalPodAutoscaler", WORKERS)["spec"]["metrics"]
    assert metric["external"]["metric"] == {
        "name": "alpcrun_session_workers_wanted",
        "selector": {"matchLabels": {"service": QM_SERVICE, "app_id": "pricing"}},
    }


def test_keda_scaled_object(tmp_path: Path) -> None:
    """mode: keda renders a ScaledObject on the same metric instead of an HPA."""
    docs = render(COMBINATIONS["keda"], tmp_path)
    assert not find(docs, "HorizontalPodAutoscaler")
    so = one(docs, "ScaledObject", WORKERS)
    assert so["spec"]["scaleTargetRef"]["name"] == WORKERS
    [trigger] = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == (
        f'sum(alpcrun_workers_wanted{{namespace="alpcrun",service="{QM_SERVICE}"}})'
    )
    assert trigger["metadata"]["threshold"] == "1"


def test_scaler_mode_deploys_scaler_with_narrow_rbac(tmp_path: Path) -> None:
    """mode: scaler runs `alpcrun scaler` with a Role limited to the pool's scale subresource."""
    docs = render(COMBINATIONS["scaler"], tmp_path)
    assert not find(docs, "HorizontalPodAutoscaler")
    scaler = one(docs, "Deployment", f"{WORKERS}-scaler")
    pod = scaler["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{FULLNAME}-scaler"
    args = _container(scaler)["args"]
    assert args[0] == "scaler"
    assert f"--deployment={WORKERS}" in args
    assert f"--metrics-url=http://{FULLNAME}-queue-manager:9337/metrics" in args
    assert "--metric=alpcrun_workers_wanted" in args
    # Probes reach the scaler's own status endpoint on the port it is told to serve on.
    container = _container(scaler)
    [port] = container["ports"]
    assert f"--metrics-port={port['containerPort']}" in args
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    role = one(docs, "Role", f"{FULLNAME}-scaler")
    scale_rule = next(r for r in role["rules"] if r["resources"] == ["deployments/scale"])
    assert scale_rule["resourceNames"] == [WORKERS]
    assert set(scale_rule["verbs"]) == {"get", "patch", "update"}
    binding = one(docs, "RoleBinding", f"{FULLNAME}-scaler")
    assert binding["subjects"][0]["name"] == f"{FULLNAME}-scaler"
    assert not find(render({}, tmp_path), "Role")


def test_journal_forces_single_replica_recreate_and_pvc(tmp_path: Path) -> None:
    """With a journal the queue manager runs once, Recreate, on a PVC it journals to."""
    docs = render(COMBINATIONS["journal"], tmp_path)
    qm = one(docs, "Deployment", f"{FULLNAME}-queue-manager")
    assert qm["spec"]["replicas"] == 1
    assert qm["spec"]["strategy"] == {"type": "Recreate"}
    pvc = one(docs, "PersistentVolumeClaim", f"{FULLNAME}-journal")
    assert pvc["spec"]["storageClassName"] == "fast"
    env = env_of(_container(qm))
    assert env["ALPCRUNCH_QM_JOURNAL"] == "/var/lib/alpcrun/journal/queue-manager.sqlite"
    mounts = {m["name"]: m["mountPath"] for m in _container(qm)["volumeMounts"]}
    assert mounts["journal"] == "/var/lib/alpcrun/journal"
    volumes = {v["name"]: v for v in qm["spec"]["template"]["spec"]["volumes"]}
    assert volumes["journal"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-journal"
    plain = one(render({}, tmp_path), "Deployment", f"{FULLNAME}-queue-manager")
    assert plain["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "ALPCRUNCH_QM_JOURNAL" not in env_of(_container(plain))


def test_existing_journal_claim_is_used_not_created(tmp_path: Path) -> None:
    """journal.existingClaim mounts that claim and renders no PVC."""
    docs = render({"queueManager": {"journal": {"enabled": True, "existingClaim": "j"}}}, tmp_path)
    assert not find(docs, "PersistentVolumeClaim")
    qm = one(docs, "Deployment", f"{FULLNAME}-queue-manager")
    volumes = {v["name"]: v for v in qm["spec"]["template"]["spec"]["volumes"]}
    assert volumes["journal"]["persistentVolumeClaim"]["claimName"] == "j"


def test_worker_gets_downward_api_and_node_agent_address(tmp_path: Path) -> None:
    """Workers learn node and pod from the Downward API and their node agent from the host IP."""
    docs = render({"workerDefaults": {"labels": {"zone": "a"}}}, tmp_path)
    worker = _container(one(docs, "Deployment", WORKERS))
    assert worker["args"][:2] == ["worker", "alpcrun.demo.worker:MonteCarloWorker"]
    env = env_of(worker)
    assert env["ALPCRUNCH_WORKER_NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["ALPCRUNCH_WORKER_POD"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ALPCRUNCH_HOST_IP"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env["ALPCRUNCH_WORKER_NODE_AGENT"] == "$(ALPCRUNCH_HOST_IP):3337"
    assert env["ALPCRUNCH_WORKER_QUEUE_MANAGER"] == f"{FULLNAME}-queue-manager:1337"
    assert env["ALPCRUNCH_WORKER_CENTRAL_CACHE"] == f"{FULLNAME}-central-cache:2337"
    assert env["ALPCRUNCH_WORKER_LABELS"] == '{"zone":"a"}'
    key = env["ALPCRUNCH_API_KEY"]["secretKeyRef"]
    assert key == {"name": f"{FULLNAME}-api-key", "key": "api-key"}
    agent = _container(one(docs, "DaemonSet", f"{FULLNAME}-node-agent"))
    grpc_port = next(p for p in agent["ports"] if p["name"] == "grpc")
    assert grpc_port["hostPort"] == grpc_port["containerPort"] == 3337
    # The env var is defined before the one that refers to it, or $(...) stays literal.
    names = [e["name"] for e in worker["env"]]
    assert names.index("ALPCRUNCH_HOST_IP") < names.index("ALPCRUNCH_WORKER_NODE_AGENT")


def test_node_local_service_instead_of_host_port(tmp_path: Path) -> None:
    """hostPort: false points workers at the node-local Service."""
    docs = render(COMBINATIONS["node-local-service"], tmp_path)
    env = env_of(_container(one(docs, "Deployment", WORKERS)))
    assert env["ALPCRUNCH_WORKER_NODE_AGENT"] == f"{FULLNAME}-node-agent:3337"
    svc = one(docs, "Service", f"{FULLNAME}-node-agent")
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    agent = _container(one(docs, "DaemonSet", f"{FULLNAME}-node-agent"))
    assert all("hostPort" not in p for p in agent["ports"])


def _read_port(agent: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in agent["ports"] if p["name"] == "read"), None)


def test_workers_read_shared_data_on_the_node_agents_read_path(tmp_path: Path) -> None:
    """The agent serves its read path on hostPort 3338; workers dial it by host IP or Service."""
    docs = render({}, tmp_path)
    agent = _container(one(docs, "DaemonSet", f"{FULLNAME}-node-agent"))
    assert "--read-port=3338" in agent["args"]
    assert _read_port(agent) == {
        "name": "read",
        "containerPort": 3338,
        "protocol": "TCP",
        "hostPort": 3338,
    }
    worker = _container(one(docs, "Deployment", WORKERS))
    env = env_of(worker)
    assert env["ALPCRUNCH_WORKER_NODE_READ_PATH"] == "$(ALPCRUNCH_HOST_IP):3338"
    names = [e["name"] for e in worker["env"]]
    assert names.index("ALPCRUNCH_HOST_IP") < names.index("ALPCRUNCH_WORKER_NODE_READ_PATH")
    by_service = render({"nodeAgent": {"hostPort": False, "readPath": {"port": 4000}}}, tmp_path)
    env = env_of(_container(one(by_service, "Deployment", WORKERS)))
    assert env["ALPCRUNCH_WORKER_NODE_READ_PATH"] == f"{FULLNAME}-node-agent:4000"
    svc = one(by_service, "Service", f"{FULLNAME}-node-agent")
    assert {"name": "read", "port": 4000, "targetPort": "read", "protocol": "TCP"} in svc["spec"][
        "ports"
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"nodeAgent": {"readPath": {"enabled": False}}},
        {"tls": {"enabled": True, "existingSecret": "my-tls"}},
    ],
    ids=["disabled", "tls"],
)
def test_read_path_off_disabled_or_under_tls(values: dict[str, Any], tmp_path: Path) -> None:
    """Switched off, or with TLS (it is plaintext): no port, and workers read over gRPC."""
    docs = render(values, tmp_path)
    agent = _container(one(docs, "DaemonSet", f"{FULLNAME}-node-agent"))
    assert "--read-port=off" in agent["args"]
    assert _read_port(agent) is None
    svc = one(docs, "Service", f"{FULLNAME}-node-agent")
    assert "read" not in {p["name"] for p in svc["spec"]["ports"]}
    env = env_of(_container(one(docs, "Deployment", WORKERS)))
    assert env["ALPCRUNCH_WORKER_NODE_READ_PATH"] == "off"


def test_gpu_pool(tmp_path: Path) -> None:
    """A gpu pool asks for nvidia.com/gpu, runs the CUDA image and tolerates GPU taints."""
    docs = render(COMBINATIONS["gpu-workers"], tmp_path)
    gpu = one(docs, "Deployment", f"{FULLNAME}-worker-gpu")
    pod = gpu["spec"]["template"]["spec"]
    container = _container(gpu)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"].endswith(":0.1.0-cuda")
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert env_of(container)["ALPCRUNCH_WORKER_LABELS"] == '{"gpu":"true"}'
    one(docs, "HorizontalPodAutoscaler", f"{FULLNAME}-worker-gpu")
    cpu = _container(one(docs, "Deployment", WORKERS))
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert cpu["image"].endswith(":0.1.0")


def test_grpc_probes_on_every_server(tmp_path: Path) -> None:
    """Servers use gRPC health probes in plaintext and TCP probes under TLS."""
    servers = [
        ("Deployment", f"{FULLNAME}-queue-manager", 1337),
        ("Deployment", f"{FULLNAME}-central-cache", 2337),
        ("DaemonSet", f"{FULLNAME}-node-agent", 3337),
    ]
    plain = render({}, tmp_path)
    tls = render(COMBINATIONS["tls-existing-secret"], tmp_path)
    for kind, name, port in servers:
        c = _container(one(plain, kind, name))
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert c[probe]["grpc"] == {"port": port}
        c = _container(one(tls, kind, name))
        assert c["readinessProbe"]["tcpSocket"] == {"port": port}
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["tls"] == "/etc/alpcrun/tls"
        volumes = {
            v["name"]: v for v in one(tls, kind, name)["spec"]["template"]["spec"]["volumes"]
        }
        assert volumes["tls"]["secret"]["secretName"] == "my-tls"


def test_cert_manager_certificate_covers_every_service(tmp_path: Path) -> None:
    """cert-manager mode issues one certificate for the release's Services."""
    cert = one(render(COMBINATIONS["tls-cert-manager"], tmp_path), "Certificate", f"{FULLNAME}-tls")
    assert cert["spec"]["secretName"] == f"{FULLNAME}-tls"
    for component in ("queue-manager", "central-cache", "node-agent"):
        assert f"{FULLNAME}-{component}.alpcrun.svc" in cert["spec"]["dnsNames"]


def test_api_key_secret_generated_given_or_existing(tmp_path: Path) -> None:
    """The API key Secret is generated, takes a given key, or is not rendered at all."""
    generated = one(render({}, tmp_path), "Secret", f"{FULLNAME}-api-key")
    assert len(generated["data"]["api-key"]) > 40
    given = one(render({"auth": {"apiKey": "s3cret"}}, tmp_path), "Secret", f"{FULLNAME}-api-key")
    assert given["data"]["api-key"] == "czNjcmV0"
    docs = render(COMBINATIONS["monitoring-and-policies"], tmp_path)
    assert not find(docs, "Secret")
    env = env_of(_container(one(docs, "Deployment", f"{FULLNAME}-queue-manager")))
    assert env["ALPCRUNCH_API_KEY"] == {"secretKeyRef": {"name": "alpcrun-key", "key": "key"}}


def test_service_monitor_and_network_policies(tmp_path: Path) -> None:
    """The ServiceMonitor scrapes the metrics ports; policies guard every server."""
    docs = render(COMBINATIONS["monitoring-and-policies"], tmp_path)
    sm = one(docs, "ServiceMonitor", FULLNAME)
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    for svc in find(docs, "Service"):
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}
    policies = {d["metadata"]["name"] for d in find(docs, "NetworkPolicy")}
    assert policies == {f"{FULLNAME}-{c}" for c in ("queue-manager", "central-cache", "node-agent")}
    agent_policy = one(docs, "NetworkPolicy", f"{FULLNAME}-node-agent")
    ports = {p["port"] for rule in agent_policy["spec"]["ingress"] for p in rule["ports"]}
    assert ports == {3337, 3338, 9339}  # gRPC, read path, metrics


def test_notes_tell_how_to_submit_a_first_job(tmp_path: Path) -> None:
    """NOTES.txt gives the API key, the port-forward and a first job."""
    out = helm(
        "install", "grid", str(CHART), "--dry-run=client", "-n", "alpcrun", values={}, tmp=tmp_path
    )
    assert out.returncode == 0, out.stderr
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl get secret -n alpcrun grid-alpcrun-api-key" in notes
    assert "kubectl port-forward -n alpcrun svc/grid-alpcrun-queue-manager 1337:1337" in notes
    assert "s.map(" in notes
    assert "alpcrun status --queue-manager localhost:1337" in notes


BAD_VALUES: dict[str, dict[str, Any]] = {
    "unknown top-level key": {"replicaCount": 3},
    "misspelt worker key": {"workerDefaults": {"workerclass": "a:B"}},
    "worker class without colon": {"workers": {"default": {"workerClass": "mymodule.Worker"}}},
    "zero concurrency": {"workerDefaults": {"concurrency": 0}},
    "port out of range": {"queueManager": {"port": 70000}},
    "unknown autoscaling mode": {"workerDefaults": {"autoscaling": {"mode": "vpa"}}},
    "unknown metric": {"workerDefaults": {"autoscaling": {"metric": "cpu"}}},
    "hpa with zero min replicas": {
        "workerDefaults": {"autoscaling": {"enabled": True, "minReplicas": 0}}
    },
    "bad duration": {"workerDefaults": {"autoscaling": {"scaler": {"interval": "soon"}}}},
    "bad log level": {"logLevel": "verbose"},
    "journal sync mode": {"queueManager": {"journal": {"sync": "always"}}},
    "relative host path": {"nodeAgent": {"hostPath": "data"}},
    "tls without a source": {"tls": {"enabled": True}},
    "pool name with capitals": {"workers": {"GPU": {}}},
    "env name lower case": {"queueManager": {"env": {"worker_timeout": "60s"}}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case: str, tmp_path: Path) -> None:
    """values.schema.json refuses the value before anything is rendered."""
    out = helm("template", "grid", str(CHART), values=BAD_VALUES[case], tmp=tmp_path)
    assert out.returncode != 0
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr


def test_schema_accepts_keda_with_zero_min_replicas(tmp_path: Path) -> None:
    """KEDA may scale a pool to zero, so minReplicas 0 is fine there."""
    values = {
        "workerDefaults": {"autoscaling": {"enabled": True, "mode": "keda", "minReplicas": 0}}
    }
    so = one(render(values, tmp_path), "ScaledObject", WORKERS)
    assert so["spec"]["minReplicaCount"] == 0


def test_node_agent_finds_central_cache_and_keeps_data_on_the_node(tmp_path: Path) -> None:
    """The node agent gets the central cache address and a hostPath for node-local data."""
    ds = one(render({}, tmp_path), "DaemonSet", f"{FULLNAME}-node-agent")
    agent = _container(ds)
    env = env_of(agent)
    assert env["ALPCRUNCH_NODE_CENTRAL_CACHE_ADDR"] == f"{FULLNAME}-central-cache:2337"
    assert env["ALPCRUNCH_NODE_UNIX_SOCKET"].startswith("/var/lib/alpcrun/node/")
    mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
    assert mounts["node-data"] == "/var/lib/alpcrun/node"
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes["node-data"]["hostPath"] == {
        "path": "/var/lib/alpcrun",
        "type": "DirectoryOrCreate",
    }
    assert agent["args"] == [
        "node-agent",
        "--port=3337",
        "--metrics-port=9339",
        "--read-port=3338",
    ]


@pytest.mark.parametrize("combo", ["defaults", "scaler", "journal", "gpu-workers"])
def test_container_args_parse_with_the_real_cli(combo: str, tmp_path: Path) -> None:
    """Every alpcrun command line the chart renders is accepted by the CLI it calls."""
    from alpcrun.cli.main import build_parser
    from workers_sdk.cli import _parser as worker_parser

    commands = set()
    docs = render(COMBINATIONS[combo], tmp_path)
    for doc in find(docs, "Deployment") + find(docs, "DaemonSet"):
        args = _container(doc)["args"]
        commands.add(args[0])
        if args[0] == "worker":
            parsed = worker_parser().parse_args(args[1:])
            assert parsed.worker == "alpcrun.demo.worker:MonteCarloWorker"
        else:
            assert build_parser().parse_args(args).command == args[0]
    assert {"queue-manager", "central-cache", "node-agent", "worker"} <= commands


def test_autoscaler_service_label_is_the_scraped_queue_manager_service(tmp_path: Path) -> None:
    """The `service` label the HPA and KEDA select on is the one Prometheus gives the queue
    manager's series: the name of the Service the ServiceMonitor scrapes on its metrics port."""
    docs = render(COMBINATIONS["monitoring-and-policies"], tmp_path)
    [monitor] = find(docs, "ServiceMonitor")
    service = one(docs, "Service", QM_SERVICE)
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_node_agents_run_the_payload_store_and_workers_reach_its_socket(tmp_path: Path) -> None:
    """By default the agent registers with the catalog and workers mount its payload socket."""
    docs = render({}, tmp_path)
    agent = _container(one(docs, "DaemonSet", f"{FULLNAME}-node-agent"))
    env = env_of(agent)
    assert env["ALPCRUNCH_NODE_QUEUE_MANAGER"] == f"{FULLNAME}-queue-manager:1337"
    assert env["ALPCRUNCH_NODE_NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["ALPCRUNCH_NODE_ADVERTISE_ADDRESS"] == "$(ALPCRUNCH_POD_IP):3337"
    assert env["ALPCRUNCH_NODE_RAM_BYTES"] == "1GB"
    assert env["ALPCRUNCH_NODE_DISK_DIR"] == "/var/lib/alpcrun/node/payloads"
    socket = env["ALPCRUNCH_NODE_PAYLOAD_SOCKET"]
    names = [e["name"] for e in agent["env"]]
    assert names.index("ALPCRUNCH_POD_IP") < names.index("ALPCRUNCH_NODE_ADVERTISE_ADDRESS")
    deployment = one(docs, "Deployment", WORKERS)
    worker = _container(deployment)
    assert env_of(worker)["ALPCRUNCH_WORKER_PAYLOAD_SOCKET"] == socket
    mounts = {m["name"]: m["mountPath"] for m in worker["volumeMounts"]}
    assert socket.startswith(mounts["node-data"] + "/")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["node-data"]["hostPath"]["path"] == "/var/lib/alpcrun"


def test_the_payload_store_can_be_turned_off_or_kept_off_disk(tmp_path: Path) -> None:
    """payloads.enabled false leaves agents and workers as before; diskBytes 0 drops the tier."""
    off = render({"nodeAgent": {"payloads": {"enabled": False}}}, tmp_path)
    agent_env = env_of(_container(one(off, "DaemonSet", f"{FULLNAME}-node-agent")))
    assert "ALPCRUNCH_NODE_QUEUE_MANAGER" not in agent_env
    worker = _container(one(off, "Deployment", WORKERS))
    assert "ALPCRUNCH_WORKER_PAYLOAD_SOCKET" not in env_of(worker)
    assert all(m["name"] != "node-data" for m in worker["volumeMounts"])
    ram_only = render({"nodeAgent": {"payloads": {"diskBytes": 0}}}, tmp_path)
    env = env_of(_container(one(ram_only, "DaemonSet", f"{FULLNAME}-node-agent")))
    assert "ALPCRUNCH_NODE_DISK_DIR" not in env
    assert env["ALPCRUNCH_NODE_RAM_BYTES"] == "1GB"
