"""deploy/kubernetes/: every core manifest validated against the Kubernetes schemas
(kubernetes-validate), the DaemonSet's privileges held to the systemd unit's, its
arguments run through the real CLI, and the PodMonitor / Service / Containerfile held to
the DaemonSet they point at."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(ROOT, "deploy", "kubernetes")
UNIT = os.path.join(ROOT, "deploy", "systemd", "portscope-exporter.service")
PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")
K8S_VERSION = "1.30"


def _docs(name):
    with open(os.path.join(K8S, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _kind(kind):
    (d,) = [d for n in ("portscope.yaml", "podmonitor.yaml") for d in _docs(n) if d["kind"] == kind]
    return d


def test_core_manifests_validate_against_the_kubernetes_schemas():
    docs = _docs("portscope.yaml")
    assert {d["kind"] for d in docs} == {"Namespace", "ServiceAccount", "DaemonSet", "Service"}
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)     # raises on any error


def test_validation_is_not_vacuous():
    ds = _kind("DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathx"] = "/metrics"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


def _unit_caps() -> set[str]:
    vals = {}
    for line in open(UNIT):
        if "=" in line and not line.startswith("#"):
            k, v = line.strip().split("=", 1)
            vals[k] = v
    assert vals["AmbientCapabilities"] == vals["CapabilityBoundingSet"]
    return {c.removeprefix("CAP_") for c in vals["AmbientCapabilities"].split()}


def test_daemonset_capabilities_equal_the_systemd_units():
    c = _kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    caps = c["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert set(caps["add"]) == _unit_caps()


def test_daemonset_shape():
    spec = _kind("DaemonSet")["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["privileged"] is False
    # the API refuses allowPrivilegeEscalation: false together with SYS_ADMIN
    assert "allowPrivilegeEscalation" not in sc
    r = c["resources"]
    assert set(r["requests"]) == set(r["limits"]) == {"cpu", "memory"}
    unit_mem = re.search(r"^MemoryMax=(\d+)M$", open(UNIT).read(), re.M).group(1)
    assert r["limits"]["memory"] == f"{unit_mem}Mi"
    probe = c["livenessProbe"]["httpGet"]
    assert probe["path"] == "/metrics" and probe["port"] == "metrics"
    assert [p["name"] for p in c["ports"]] == ["metrics"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert all(m["readOnly"] for m in mounts.values())
    # the container sees each host path where the host has it: discovery reads the same paths
    vols = {v["name"]: v for v in spec["volumes"]}
    assert set(vols) == set(mounts)
    for name, m in mounts.items():
        assert m["mountPath"] == vols[name]["hostPath"]["path"], name


def test_daemonset_arguments_are_accepted_by_the_real_cli():
    """The container's args, with $(POD_IP) filled in, run through `portscope` (one
    collection as JSON instead of serving)."""
    c = _kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    args = [a.replace("$(POD_IP)", "127.0.0.1") for a in c["args"]]
    r = subprocess.run([PORTSCOPE, *args, "--json"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "portscope_ephemeral_range_ports" in r.stdout
    port = c["ports"][0]["containerPort"]
    assert any(a.endswith(f":{port}") for a in c["args"] if a.startswith("--listen"))


def test_service_and_podmonitor_select_the_daemonset_pods():
    ds = _kind("DaemonSet")
    labels = ds["spec"]["template"]["metadata"]["labels"]
    svc, pm = _kind("Service"), _kind("PodMonitor")
    assert svc["spec"]["selector"] == labels and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"]["matchLabels"] == labels
    (ep,) = pm["spec"]["podMetricsEndpoints"]
    assert ep["port"] == "metrics" and ep["path"] == "/metrics"
    for d in (svc, pm, ds):
        assert d["metadata"]["namespace"] == _kind("Namespace")["metadata"]["name"]
    # the PodMonitor is a CRD: no schema in kubernetes-validate, so it is checked above instead
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(pm, K8S_VERSION, strict=True)


def test_containerfile_copies_what_exists_and_runs_portscope():
    text = open(os.path.join(K8S, "Containerfile")).read()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            for src in line.split()[1:-1]:
                assert os.path.exists(os.path.join(ROOT, src)), src
    assert 'ENTRYPOINT ["portscope"]' in text
    ds = _kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert ds["args"][0] == "exporter"
