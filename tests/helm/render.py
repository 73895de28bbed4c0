"""Lints the Helm chart with helm-python-sdk (the Helm v4 engine, no helm binary), renders it with
several value sets and validates every rendered manifest against the Kubernetes JSON schemas that
kubernetes-validate ships (offline, strict: unknown fields are errors).

Usage: python3 tests/helm/render.py CHART_DIR OUT_DIR
For each value set NAME (below), writes every manifest to OUT_DIR/NAME/<template name>, the
broker's config.toml (from the ConfigMap) to OUT_DIR/NAME/config.toml and, when the chart made a
Secret, each of its keys (decoded) to OUT_DIR/NAME/secret-<key>. Exits non-zero on any lint
error, render failure or invalid manifest.
"""
import base64
import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml

# A recent version kubernetes-validate ships schemas for.
K8S_VERSION = "1.36.0"
# Custom resources have no schema in the Kubernetes set: checked for shape only.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

VALUE_SETS = {
    "defaults": {},
    "full": {
        "config": {
            "cors_origins": ["https://claude.ai", "https://app.example"],
            "allowed_hosts": ["bridge.example.com"],
            "retention_types": {"log": "short", "audit": "permanent"},
            "max_frame_bytes": 2097152,
            "ack_timeout_s": 12.5,
            "exit_on_escalation": True,
            "log_level": "info,agent_bridge=debug",
        },
        "auth": {"jwt": {"enabled": True}},
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": ["bridge.example.com"],
            "tls": [{"secretName": "bridge-tls", "hosts": ["bridge.example.com"]}],
        },
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 0},
    },
    "existing-secret": {
        "auth": {"bootstrapAdminKey": {"existingSecret": "my-admin-key", "secretKey": "key"}},
        "persistence": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
    },
}

chart_dir, out_dir = sys.argv[1], sys.argv[2]
report = helm.lint(chart_dir, strict=True)
if report.get("errors"):
    print("lint errors:", json.dumps(report, indent=2))
    sys.exit(1)
failures = []
for set_name, values in VALUE_SETS.items():
    rendered = helm.Chart.load(chart_dir).render(values, name="ab", namespace="default")
    out = os.path.join(out_dir, set_name)
    os.makedirs(out, exist_ok=True)
    for name, text in rendered.items():
        base = os.path.basename(name)
        with open(os.path.join(out, base), "w") as f:
            f.write(text)
        if base == "NOTES.txt":
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kind = (doc.get("apiVersion"), doc.get("kind"))
            if kind in CUSTOM_KINDS:
                if not doc.get("metadata", {}).get("name") or not doc.get("spec"):
                    failures.append(f"{set_name}/{base}: {kind} without name or spec")
                continue
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                failures.append(f"{set_name}/{base}: {e.message} at {list(e.path)}")
            if doc.get("kind") == "ConfigMap":
                with open(os.path.join(out, "config.toml"), "w") as f:
                    f.write(doc["data"]["config.toml"])
            if doc.get("kind") == "Secret":
                for key, value in doc.get("data", {}).items():
                    with open(os.path.join(out, f"secret-{key}"), "wb") as f:
                        f.write(base64.b64decode(value))
    print(set_name, "rendered", sorted(os.path.basename(n) for n in rendered))
if failures:
    print("invalid manifests:\n" + "\n".join(failures))
    sys.exit(1)
