"""The DaemonSet of deploy/nsfs.yaml: valid against Kubernetes' published schema (the
kubernetes-validate package, strict), shown as it is in docs/kubernetes.md, and with the
values the daemon needs. tests/test_image.py runs the image as it says."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).parents[2]
MANIFEST = ROOT / "deploy" / "nsfs.yaml"
KUBERNETES = "1.37.0"


def documents() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(MANIFEST.read_text()))


def daemonset() -> dict[str, Any]:
    (found,) = [doc for doc in documents() if doc["kind"] == "DaemonSet"]
    return found


def test_every_document_is_valid_against_kubernetes_schema() -> None:
    for doc in documents():
        assert kubernetes_validate.validate(doc, KUBERNETES, strict=True) == KUBERNETES.rsplit(".", 1)[0]


def test_the_validator_refuses_what_kubernetes_would() -> None:
    wrong = copy.deepcopy(daemonset())
    wrong["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError, match="'yes' is not of type 'boolean'"):
        kubernetes_validate.validate(wrong, KUBERNETES, strict=True)
    unknown = copy.deepcopy(daemonset())
    unknown["spec"]["template"]["spec"]["hostPIDs"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="hostPIDs"):
        kubernetes_validate.validate(unknown, KUBERNETES, strict=True)


def test_the_docs_show_the_file() -> None:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    (shown,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert list(yaml.safe_load_all(shown)) == documents()


def test_what_the_daemon_needs_of_the_node() -> None:
    spec = daemonset()["spec"]["template"]["spec"]
    assert spec["hostPID"] is True
    (container,) = spec["containers"]
    assert container["securityContext"] == {"privileged": True}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/run/namespaces"]["mountPropagation"] == "Bidirectional"
    assert "mountPropagation" not in mounts["/run/nsfs"]
    volumes = {v["name"]: v["hostPath"] for v in spec["volumes"]}
    assert volumes[mounts["/run/namespaces"]["name"]] == {"path": "/run/namespaces", "type": "DirectoryOrCreate"}
    assert volumes[mounts["/run/nsfs"]["name"]] == {"path": "/run/nsfs", "type": "DirectoryOrCreate"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
    # Sized from the bench (README, At scale): 44-60 MB resident at 5,000-10,000 processes,
    # 86-103 MB at 20,000, with the sweep helper beside it; idle 1.3-1.7% of a core.
    assert container["resources"] == {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}
