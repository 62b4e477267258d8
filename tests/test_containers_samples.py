"""Container / pod identity held to recorded real /proc/PID/cgroup files (tests/samples/cgroup)."""
from __future__ import annotations

import json
import os

import pytest

from portscope import containers

HERE = os.path.join(os.path.dirname(__file__), "samples", "cgroup")
EXPECTED = json.load(open(os.path.join(HERE, "expected.json")))


def _j(ident):
    return {"container": ident.container.to_json() if ident.container else None,
            "pod": ident.pod.to_json() if ident.pod else None}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_cgroup_file(name):
    with open(os.path.join(HERE, name)) as f:
        assert _j(containers.parse(f.read())) == EXPECTED[name]


def test_every_sample_has_an_expectation():
    files = {f for f in os.listdir(HERE) if f.endswith(".txt")}
    assert files == set(EXPECTED)


def test_samples_cover_both_versions_and_both_drivers():
    names = set(EXPECTED)
    assert any(n.startswith("v1_cgroupfs") for n in names) and any(n.startswith("v1_systemd") for n in names)
    assert any(n.startswith("v2_") or n.startswith("hybrid_") for n in names)


def test_v2_line_wins_and_v1_fills_the_gaps():
    # hybrid host: the unified hierarchy says "/", a v1 hierarchy names the container
    cid = "ab" * 32
    text = f"0::/\n4:memory:/docker/{cid}\n"
    assert containers.parse(text).container == containers.Container("docker", cid)
    other = "cd" * 32
    text = f"0::/system.slice/docker-{other}.scope\n4:memory:/docker/{cid}\n"
    assert containers.parse(text).container.id == other


def test_guaranteed_pod_has_no_qos_level_in_either_driver():
    uid = "0b7632a2-a56e-4278-987a-22de18008dbe"
    cid = "ef" * 32
    sysd = f"0::/kubepods.slice/kubepods-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope\n"
    cgfs = f"0::/kubepods/pod{uid}/{cid}\n"
    for text in (sysd, cgfs):
        ident = containers.parse(text)
        assert ident.pod == containers.Pod(uid, "guaranteed"), text
        assert ident.container.id == cid


def test_garbage_is_no_identity_not_an_error():
    for text in ("", "nonsense", "0::", "1:cpu", "0::/kubepods.slice/x.slice\n", "0::/docker/short\n"):
        assert not containers.parse(text)
