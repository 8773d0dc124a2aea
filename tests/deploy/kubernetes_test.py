#!/usr/bin/env python3
"""Checks deploy/kubernetes/ without a cluster (Debian 12 has no kubectl):
the files parse as YAML, the DaemonSet probes the daemon's real health
endpoints on the port its --admin flag opens, mounts the hostPath that holds
its --socket, and the Prometheus job keeps exactly the DaemonSet's pods.

    kubernetes_test.py DEPLOY_DIR KVTIERD
"""
import subprocess
import sys

import yaml


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def main(deploy, kvtierd):
    with open(deploy + "/kubernetes/kvtierd-daemonset.yaml") as f:
        ds = yaml.safe_load(f)
    if ds.get("kind") != "DaemonSet" or ds.get("apiVersion") != "apps/v1":
        fail("not an apps/v1 DaemonSet")
    spec = ds["spec"]
    labels = spec["template"]["metadata"]["labels"]
    if spec["selector"]["matchLabels"].items() - labels.items():
        fail("the selector does not match the pod template's labels")
    pod = spec["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "kvtierd"]
    args = dict(a[2:].split("=", 1) for a in c["args"] if "=" in a)
    admin_port = int(args["admin"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    if ports.get("admin") != admin_port:
        fail("container port 'admin' is not the --admin port %d" % admin_port)
    probes = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in probes.items():
        get = c[probe]["httpGet"]
        if get["path"] != path or get["port"] not in ("admin", admin_port):
            fail("%s should GET %s on the admin port" % (probe, path))
    annotations = spec["template"]["metadata"]["annotations"]
    if annotations.get("prometheus.io/port") != str(admin_port):
        fail("prometheus.io/port is not the admin port")
    # The socket's directory is a hostPath volume mounted in the container.
    sock_dir = args["socket"].rsplit("/", 1)[0]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    if sock_dir not in mounts or "hostPath" not in volumes[mounts[sock_dir]]:
        fail("the socket directory %s is not a hostPath mount" % sock_dir)
    # The daemon accepts the flags (its config file comes from the ConfigMap;
    # here --help only checks that every flag name exists).
    help_text = subprocess.run([kvtierd, "--help"], capture_output=True, text=True, check=True).stdout
    for a in c["args"]:
        name = a.split("=", 1)[0]
        if "  " + name not in help_text:
            fail("kvtierd has no flag %s" % name)
    # The drain fits in the grace period.
    if pod["terminationGracePeriodSeconds"] <= 10:
        fail("terminationGracePeriodSeconds leaves no room for the 10 s drain")
    with open(deploy + "/kubernetes/prometheus-scrape.yml") as f:
        scrape = yaml.safe_load(f)
    (job,) = scrape["scrape_configs"]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    if not any(r["regex"] == labels["app.kubernetes.io/name"] for r in keep):
        fail("the scrape job does not keep the DaemonSet's pods")
    print("ok: DaemonSet and scrape job agree with kvtierd")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
