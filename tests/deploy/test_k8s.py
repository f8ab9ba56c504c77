"""deploy/k8s: every manifest and the rendered kustomization validate against the Kubernetes API schemas.

Validation is offline with `kubernetes-validate` (it bundles the OpenAPI schemas). The kustomization
is rendered in Python (images, replicas, configMapGenerator, secretGenerator — the settings that
deploy/cluster.md documents), after changing experiment, image and replicas the documented way; where
a `kustomize` or `kubectl` binary exists its rendering is checked the same way too.
"""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess
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


def render(directory: Path) -> list[dict]:
    """Apply kustomization.yaml's resources, images, replicas and generators (no name hash suffix)."""
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    out = [d for r in kust["resources"] for d in _docs(directory / r)]
    images = {i["name"]: i for i in kust.get("images", [])}
    replicas = {r["name"]: r["count"] for r in kust.get("replicas", [])}
    for doc in out:
        if doc["kind"] in ("Deployment", "StatefulSet"):
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
    # = kustomize edit set replicas stackrl-actor=7
    kust["replicas"] = [{"name": "stackrl-actor", "count": 7}]
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
    assert kinds == {"Service", "StatefulSet", "Deployment"}


def test_a_broken_manifest_is_caught():
    doc = _docs(K8S / "actors.yaml")[0]
    bad = copy.deepcopy(doc)
    bad["spec"]["replicas"] = "two"
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
    assert sorted(by_kind) == ["ConfigMap", "Deployment", "Secret", "Service", "StatefulSet"]
    (actors,), (learner,), (svc,) = by_kind["Deployment"], by_kind["StatefulSet"], by_kind["Service"]
    (cm,), (secret,) = by_kind["ConfigMap"], by_kind["Secret"]
    assert actors["spec"]["replicas"] == 7 and learner["spec"]["replicas"] == 1
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
    assert f"--host 0.0.0.0 --port {port}" in " ".join(_containers(learner)[0]["args"])


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
