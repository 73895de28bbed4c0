"""Lints and renders the Helm chart with helm-python-sdk (the Helm v4 engine, no helm binary).

Usage: python3 tests/helm/render.py CHART_DIR OUT_DIR
Writes every rendered manifest to OUT_DIR/<template name> and the broker's config.toml (from the
ConfigMap) to OUT_DIR/config.toml; exits non-zero on any lint error or render failure.
"""
import json
import os
import sys

import helm_python as helm

chart_dir, out_dir = sys.argv[1], sys.argv[2]
report = helm.lint(chart_dir, strict=True)
if report.get("errors"):
    print("lint errors:", json.dumps(report, indent=2))
    sys.exit(1)
for values in ({}, {"serviceMonitor": {"enabled": True}, "persistence": {"enabled": False}}):
    rendered = helm.Chart.load(chart_dir).render(values, name="ab", namespace="default")
os.makedirs(out_dir, exist_ok=True)
rendered = helm.Chart.load(chart_dir).render({}, name="ab", namespace="default")
for name, text in rendered.items():
    with open(os.path.join(out_dir, os.path.basename(name)), "w") as f:
        f.write(text)
    if name.endswith("configmap.yaml"):
        body = text.split("config.toml: |\n", 1)[1]
        lines = [line[4:] for line in body.splitlines() if line.startswith("    ")]
        with open(os.path.join(out_dir, "config.toml"), "w") as f:
            f.write("\n".join(lines) + "\n")
print("rendered", sorted(rendered))
