"""deploy/k8s: every manifest and the rendered kustomization validate against the Kubernetes API schemas.

Validation is offline with `kubernetes-validate` (it bundles the OpenAPI schemas). The kustomization
is rendered in Python (images, replicas, configMapGenerator, secretGenerator — the settings that
deploy/cluster.md documents), after changing experiment, image and replicas the documented way; where
a `kustomize` or `kubectl` binary exists its rendering is checked the same way too.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from stackrl.config import ExperimentConfig

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
K8S_VERSION = "1.30"


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError


def _containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def _json_patch(doc: dict, ops: list[dict]) -> None:
    """RFC 6902 `add` / `replace` on object paths (what the kustomizations here use)."""
    for op in ops:
        assert op["op"] in ("add", "replace"), op
        keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].lstrip("/").split("/")]
        node = doc
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if op["op"] == "replace":
            assert keys[-1] in node, op  # replace needs an existing value
        node[keys[-1]] = op["value"]


def render(directory: Path) -> list[dict]:
    """Apply kustomization.yaml's resources (files or kustomization directories), images, replicas,
    JSON patches and generators (no name hash suffix)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out = []
    for r in kust["resources"]:
        path = (directory / r).resolve()
        out += render(path) if path.is_dir() else _docs(path)
    images = {i["name"]: i for i in kust.get("images", [])}
    replicas = {r["name"]: r["count"] for r in kust.get("replicas", [])}
    for patch in kust.get("patches", []):
        target = patch["target"]
        hits = [d for d in out if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(hits) == 1, patch
        _json_patch(hits[0], yaml.safe_load(patch["patch"]))
    for doc in out:
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            if doc["metadata"]["name"] in replicas:
                doc["spec"]["replicas"] = replicas[doc["metadata"]["name"]]
            for c in _containers(doc):
                name, _, tag = c["image"].partition(":")
                if name in images:
                    img = images[name]
                    c["image"] = f"{img.get('newName', name)}:{img.get('newTag', tag or 'latest')}"
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for item in gen.get("files", []):
            key, _, path = item.partition("=") if "=" in item else (Path(item).name, "", item)
            data[key] = (directory / path).read_text()
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    for gen in kust.get("secretGenerator", []):
        data = {}
        for env in gen.get("envs", []):
            for line in (directory / env).read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    k, _, v = line.partition("=")
                    data[k.strip()] = base64.b64encode(v.strip().encode()).decode()
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": gen["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    return out


@pytest.fixture
def configured(tmp_path: Path) -> Path:
    """A copy of deploy/k8s set up as deploy/cluster.md says: token.env, experiment, image, replicas."""
    d = tmp_path / "k8s"
    shutil.copytree(K8S, d)
    assert not (K8S / "token.env").exists(), "token.env holds a secret: it must not be in the repository"
    (d / "token.env").write_text("token=s3cret-for-the-test\n")
    exp = yaml.safe_load((d / "experiment.yaml").read_text())
    exp["name"] = exp["env"]["name"] = "battle_of_the_sexes"
    (d / "my-experiment.yaml").write_text(yaml.safe_dump(exp))
    kust = yaml.safe_load((d / "kustomization.yaml").read_text())
    # = kustomize edit set image stackrl=registry.example.org/stackrl:cuda
    kust["images"] = [{"name": "stackrl", "newName": "registry.example.org/stackrl", "newTag": "cuda"}]
    # 7 actors: the actors' Job patch, both values
    for op in (ops := yaml.safe_load(kust["patches"][0]["patch"])):
        op["value"] = 7
    kust["patches"][0]["patch"] = yaml.safe_dump(ops)
    kust["configMapGenerator"][0]["files"] = ["experiment.yaml=my-experiment.yaml"]
    (d / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    return d


def test_every_manifest_validates_against_the_kubernetes_schemas():
    files = sorted(K8S.glob("*.yaml"))
    kinds = set()
    for f in files:
        if f.name in ("kustomization.yaml", "experiment.yaml"):
            continue
        for doc in _docs(f):
            _validate(doc)
            kinds.add(doc["kind"])
    assert kinds == {"Service", "StatefulSet", "Job"}


def test_a_broken_manifest_is_caught():
    doc = _docs(K8S / "actors.yaml")[0]
    bad = copy.deepcopy(doc)
    bad["spec"]["parallelism"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)
    bad = copy.deepcopy(doc)
    _containers(bad)[0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)


def test_the_experiment_in_the_configmap_is_a_valid_stackrl_config_writing_to_the_volume():
    cfg = ExperimentConfig.from_dict(yaml.safe_load((K8S / "experiment.yaml").read_text()))
    learner = next(d for d in _docs(K8S / "learner.yaml") if d["kind"] == "StatefulSet")
    mounts = {m["name"]: m["mountPath"] for m in _containers(learner)[0]["volumeMounts"]}
    assert str(cfg.run_dir.parent) == mounts["runs"]
    assert learner["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "runs"


def _check_rendered(docs: list[dict]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        _validate(doc)
        by_kind.setdefault(doc["kind"], []).append(doc)
    assert sorted(by_kind) == ["ConfigMap", "Job", "Secret", "Service", "StatefulSet"]
    (actors,), (learner,), (svc,) = by_kind["Job"], by_kind["StatefulSet"], by_kind["Service"]
    (cm,), (secret,) = by_kind["ConfigMap"], by_kind["Secret"]
    assert actors["spec"]["parallelism"] == actors["spec"]["completions"] == 7
    assert learner["spec"]["replicas"] == 1
    for d in (actors, learner):
        assert _containers(d)[0]["image"] == "registry.example.org/stackrl:cuda"
        env = {e["name"]: e for e in _containers(d)[0]["env"]}
        assert env["STACKRL_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "token",
        }
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret-for-the-test"
    exp = ExperimentConfig.from_dict(yaml.safe_load(cm["data"]["experiment.yaml"]))
    assert exp.env.name == "battle_of_the_sexes" and exp.run_root == "/runs"
    volumes = learner["spec"]["template"]["spec"]["volumes"]
    assert {"name": "experiment", "configMap": {"name": cm["metadata"]["name"]}} in volumes
    # Actors reach the learner by its Service DNS name and port; the learner binds off loopback.
    port = svc["spec"]["ports"][0]["port"]
    assert f"--learner={svc['metadata']['name']}:{port}" in _containers(actors)[0]["args"]
    assert svc["spec"]["selector"] == learner["spec"]["template"]["metadata"]["labels"]
    assert learner["spec"]["serviceName"] == svc["metadata"]["name"]
    assert {"--host=0.0.0.0", f"--port={port}"} <= set(_containers(learner)[0]["args"])


def test_rendered_kustomization_with_experiment_image_and_replicas_set(configured: Path):
    _check_rendered(render(configured))


def test_kustomize_binary_renders_the_same_settings(configured: Path):
    """The Python rendering above is checked against the real kustomize wherever one is installed."""
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(configured)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(configured)]
    else:
        pytest.skip("no kustomize or kubectl binary (the Python rendering is tested above)")
    docs = [
        d
        for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if d
    ]
    _check_rendered(docs)


# -- the image ------------------------------------------------------------------------------------
def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, comments dropped."""
    text = (K8S.parent / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instr, _, rest = line.strip().partition(" ")
            out.append((instr.upper(), rest.strip()))
    return out


def test_dockerfile_cpu_default_cuda_by_argument_and_the_readme_install():
    steps = _dockerfile()
    args = dict(v.partition("=")[::2] for i, v in steps if i == "ARG")
    assert steps[0] == ("ARG", "BASE=python:3.11-slim") and steps[1] == ("FROM", "${BASE}")
    assert args["TORCH_INDEX"].endswith("/whl/cpu") and args["TORCH_VERSION"] == "2.13.0"
    runs = [v for i, v in steps if i == "RUN"]
    torch_step = next(r for r in runs if r.startswith('pip install "torch=='))
    assert '--index-url "${TORCH_INDEX}"' in torch_step
    pkg = runs.index(next(r for r in runs if r.startswith('pip install "/src/stackrl')))
    assert runs.index(torch_step) < pkg  # torch first, then the package, as in the README
    assert ("COPY", ". /src/stackrl") in steps and ("USER", "1000:1000") in steps
    assert next(v for i, v in steps if i == "ENTRYPOINT") == '["stackrl"]'
    ignored = (K8S.parents[1] / ".dockerignore").read_text().split()
    assert {".git", "runs", "deploy/k8s/token.env"} <= set(ignored)


# -- issue 14: actors that end with the run, a learner that resumes, a GPU for the learner only ------
def _by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs if d["kind"] in ("Job", "StatefulSet")}


def test_actors_are_a_job_whose_succeeded_pods_are_not_restarted():
    (actors,) = _docs(K8S / "actors.yaml")
    spec = actors["spec"]
    assert actors["kind"] == "Job" and spec["completions"] == spec["parallelism"]
    # OnFailure: a crashed actor restarts; one that exited 0 (the learner ended the run) stays done.
    assert spec["template"]["spec"]["restartPolicy"] == "OnFailure"
    res = _containers(actors)[0]["resources"]
    assert res["requests"]["cpu"] and "nvidia.com/gpu" not in res.get("limits", {})


def test_learner_is_pid_1_with_a_volume_and_resumes_on_restart():
    learner = next(d for d in _docs(K8S / "learner.yaml") if d["kind"] == "StatefulSet")
    c = _containers(learner)[0]
    # No shell in front of it: SIGTERM from the kubelet reaches the learner, which checkpoints.
    assert "command" not in c and c["args"][:2] == ["learner", "/etc/stackrl/experiment.yaml"]
    assert {"--resume", "--stay-up", "--no-progress"} <= set(c["args"])
    assert learner["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 30
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    claim = learner["spec"]["volumeClaimTemplates"][0]
    assert mounts[claim["metadata"]["name"]] == "/runs" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_gpu_overlay_gives_the_learner_a_gpu_limit_and_the_actors_none(configured: Path):
    docs = render(configured / "gpu")
    for doc in docs:
        _validate(doc)
    kinds = _by_kind(docs)
    learner, actors = _containers(kinds["StatefulSet"])[0], _containers(kinds["Job"])[0]
    assert learner["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert learner["image"].endswith(":cuda")
    assert (
        "nvidia.com/gpu" not in actors["resources"].get("limits", {})
        and actors["resources"]["requests"]["cpu"]
    )
    # The base alone (CPU clusters) asks for no GPU.
    assert (
        "nvidia.com/gpu"
        not in _containers(_by_kind(render(configured))["StatefulSet"])[0]["resources"]["limits"]
    )


def _learner_entry_point(tmp_path: Path) -> list[str]:
    """The StatefulSet's command line, run here: the ConfigMap's experiment with its run root in a
    temporary folder, bound to loopback on a free port instead of the pod's 0.0.0.0:50051."""
    learner = next(d for d in _docs(K8S / "learner.yaml") if d["kind"] == "StatefulSet")
    exp = yaml.safe_load((K8S / "experiment.yaml").read_text())
    exp["run_root"] = str(tmp_path / "runs")
    (tmp_path / "experiment.yaml").write_text(yaml.safe_dump(exp))
    swap = {
        "/etc/stackrl/experiment.yaml": str(tmp_path / "experiment.yaml"),
        "--host=0.0.0.0": "--host=127.0.0.1",
    }
    args = [
        swap.get(a, "--port=0" if a.startswith("--port=") else a) for a in _containers(learner)[0]["args"]
    ]
    return [sys.executable, "-m", "stackrl.deploy.cli", *args]


def _start_and_stop(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Start the learner, wait until it listens, send SIGTERM (what the kubelet sends), collect its log."""
    env = {**os.environ, "STACKRL_TOKEN": "a-token-for-the-kubernetes-test"}
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("learner listening on"):
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=60)
    return proc.returncode, "".join(lines) + rest


def test_the_learner_entry_point_checkpoints_on_sigterm_and_resumes_when_restarted(tmp_path: Path):
    cmd = _learner_entry_point(tmp_path)
    run = tmp_path / "runs" / yaml.safe_load((K8S / "experiment.yaml").read_text())["name"]
    code, log = _start_and_stop(cmd, tmp_path)  # the first pod: a fresh run, stopped
    assert code == 128 + signal.SIGTERM and "checkpoint written to" in log, log
    assert (run / "checkpoint.pt").exists() and "resumed from" not in log
    code, log = _start_and_stop(cmd, tmp_path)  # the restarted pod: the same command resumes the run
    assert code == 128 + signal.SIGTERM, log
    assert f"resumed from {run / 'checkpoint.pt'} at 0 env steps" in log, log
