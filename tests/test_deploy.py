"""The deployment files in deploy/ against the installed Ray, the real CLI and each other.

No Ray is started, no image built, no cluster contacted: the launcher configs are
validated with the JSON schema (and the config preparation) of the installed
Ray, the KubeRay manifests are checked field by field, the commands they and
deploy/README.md run are parsed by dtrain's own command line, and the versions
and image names that several files repeat are checked to agree.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.resources
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import typer
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from dtrain import __version__
from dtrain.cli.main import app
from dtrain.cluster.api_server import DEFAULT_PORT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
LAUNCHER_CONFIGS = ["cluster.yaml", "cluster-onprem.yaml"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
IMAGE = f"dtrain:{VERSION}"
WHEEL = f"dtrain-{VERSION}-py3-none-any.whl"


# ---------------------------------------------------------------- helpers


def load(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


def manifests(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / "kuberay" / name).read_text()) if d]


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def dockerfile_ray_version() -> str:
    m = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile(), re.M)
    assert m, "deploy/Dockerfile: expected `ARG RAY_VERSION=X.Y.Z` before FROM"
    return m.group(1)


def ray_schema() -> dict:
    return json.loads(importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json").read_text())


def pod_specs(cluster: dict) -> list[dict]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in spec["workerGroupSpecs"]]


def submit_command():
    return typer.main.get_command(app).commands["submit"]


def parse_dtrain(args: list[str]):
    """Parse `dtrain ARGS...` with the real CLI (types, choices, unknown options), without running it."""
    group = typer.main.get_command(app)
    assert args, "a bare `dtrain`"
    assert args[0] in group.commands, f"`dtrain {args[0]}`: no such command (have {sorted(group.commands)})"
    command = group.commands[args[0]]
    return command.make_context(args[0], list(args[1:]))


def entrypoint_args(entrypoint: str) -> list[str]:
    words = shlex.split(entrypoint)
    assert words[0] == "dtrain", f"the entrypoint should run dtrain, not {words[0]!r}"
    return words[1:]


def option_value(args: list[str], name: str) -> str | None:
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- (a) Ray cluster launcher configs


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_matches_the_installed_rays_schema(name):
    jsonschema.validate(load(name), ray_schema())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_survives_what_ray_up_does_before_the_cloud(name):
    # `ray up` fills in the provider's defaults and validates the result before
    # it creates a single node; a config it would refuse fails here.
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(load(name))))


def test_cloud_config_has_a_head_and_a_fixed_size_worker_type():
    config = load("cluster.yaml")
    types = config["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    workers = {k: v for k, v in types.items() if k != head}
    assert len(workers) == 1
    (worker,) = workers.values()
    # dtrain never asks the autoscaler for nodes: the workers must be there from the start.
    assert worker["min_workers"] == worker["max_workers"] == config["max_workers"] >= 1
    # The head carries dtrain's runners and servers (0 CPUs each) but no SGD workers.
    assert types[head]["resources"].get("CPU") == 0
    assert worker["resources"].get("CPU", 0) >= 1


def test_onprem_config_uses_the_local_providers_single_node_type():
    config = load("cluster-onprem.yaml")
    assert config["provider"]["type"] == "local"
    # `ray up` aborts on these for the local provider: it makes its own single type.
    assert "available_node_types" not in config and "head_node_type" not in config
    assert config["provider"]["head_ip"] and config["provider"]["worker_ips"]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_starts_ray_with_token_authentication(name):
    config = load(name)
    mounts = config["file_mounts"]
    token = [remote for remote, local in mounts.items() if remote.endswith(".ray/auth_token")]
    assert token, "the token file must be copied to the default token path on every node"
    assert mounts[token[0]] == "~/.ray/auth_token"
    for key, flag in (("head_start_ray_commands", "--head"), ("worker_start_ray_commands", "--address=$RAY_HEAD_IP:6379")):
        starts = [c for c in config[key] if "ray start" in c]
        assert len(starts) == 1, key
        assert "RAY_AUTH_MODE=token" in starts[0] and "ray start" in starts[0], f"{key}: ray start without RAY_AUTH_MODE=token"
        assert flag in starts[0], key
    assert any("RAY_AUTH_MODE=token" in c for c in config["initialization_commands"])
    # dtrain's HTTP API is served beyond the head (it then answers only the bearer of Ray's token)
    assert "DTRAIN_API_HOST=0.0.0.0" in [c for c in config["head_start_ray_commands"] if "ray start" in c][0]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_installs_this_dtrain_and_the_pinned_ray_on_every_node(name):
    config = load(name)
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert len(installs) == 1
    words = shlex.split(installs[0])
    assert "-e" not in words and "--editable" not in words
    assert f"ray[default]=={dockerfile_ray_version()}" in words
    wheels = [w for w in words if w.endswith(".whl")]
    assert len(wheels) == 1 and wheels[0].endswith("/" + WHEEL), f"expected the {WHEEL} wheel, got {wheels}"
    # ... from the folder that file_mounts fills with the wheels built in the repository's dist/.
    folder = wheels[0].rsplit("/", 1)[0]
    assert config["file_mounts"].get(folder) == "./dist"


# ---------------------------------------------------------------- (b) KubeRay manifests


def test_raycluster_manifest_structure():
    docs = manifests("raycluster.yaml")
    cluster = one(docs, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["name"]
    spec = cluster["spec"]
    # Token authentication from a Secret the user creates (deploy/README.md).
    assert spec["authOptions"]["mode"] == "token"
    assert spec["authOptions"]["secretName"]
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["rayStartParams"].get("num-cpus") == "0"
    groups = spec["workerGroupSpecs"]
    assert groups, "no worker group"
    for group in [head] + groups:
        # KubeRay's CRD takes rayStartParams as a map of strings.
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
    for group in groups:
        assert group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert isinstance(group["rayStartParams"], dict)
    for pod in pod_specs(cluster):
        containers = pod["containers"]
        assert containers and containers[0]["name"] and containers[0]["image"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(containers[0]["resources"][part]), part
    names = [p["name"] for p in head["template"]["spec"]["containers"][0].get("ports", [])]
    assert {"gcs-server", "dashboard", "client", "dtrain-api"} <= set(names)
    ports = {p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    env = {e["name"]: e["value"] for e in head["template"]["spec"]["containers"][0]["env"]}
    assert ports["dtrain-api"] == DEFAULT_PORT and env["DTRAIN_API_HOST"] == "0.0.0.0"  # served beyond the pod, token on


def test_raycluster_ray_version_is_the_installed_rays_family_and_the_images():
    cluster = one(manifests("raycluster.yaml"), "RayCluster")
    ray_version = cluster["spec"]["rayVersion"]
    assert isinstance(ray_version, str), "rayVersion must be a string (quote it)"
    assert ray_version == dockerfile_ray_version()
    assert Version(ray_version).release[:2] == Version(ray.__version__).release[:2]


def test_raycluster_keeps_the_job_store_on_a_volume_of_the_head():
    docs = manifests("raycluster.yaml")
    cluster = one(docs, "RayCluster")
    pod = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    storage = env.get("DTRAIN_STORAGE")
    assert storage, "the head should set DTRAIN_STORAGE"
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert storage in mounts, f"DTRAIN_STORAGE={storage} is not a mounted volume"
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[storage])
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["apiVersion"] == "v1" and pvc["metadata"]["name"] == claim


def test_rayjob_manifest_structure():
    job = one(manifests("rayjob.yaml"), "RayJob")
    cluster = one(manifests("raycluster.yaml"), "RayCluster")
    assert job["apiVersion"] == "ray.io/v1"
    assert job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].strip()
    # It runs on the RayCluster above rather than making its own.
    assert spec["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    assert "rayClusterSpec" not in spec
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}


# ---------------------------------------------------------------- (c) the files agree with each other and the CLI


def test_rayjob_entrypoint_is_a_command_the_real_cli_accepts():
    args = entrypoint_args(one(manifests("rayjob.yaml"), "RayJob")["spec"]["entrypoint"])
    assert args[0] == "submit"
    known = {opt for p in submit_command().params for opt in p.opts + p.secondary_opts}
    for word in args[1:]:
        if word.startswith("-"):
            assert word.split("=", 1)[0] in known, f"`dtrain submit` has no option {word}"
    ctx = parse_dtrain(args)  # raises on an unknown option or a bad value
    assert ctx.params["as_json"] is True  # the submitter's log ends with one JSON line
    assert not ctx.params["detach"]  # the RayJob's state is the training's outcome


def test_rayjob_storage_is_the_heads_volume():
    args = entrypoint_args(one(manifests("rayjob.yaml"), "RayJob")["spec"]["entrypoint"])
    head = one(manifests("raycluster.yaml"), "RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in head["containers"][0].get("env", [])}
    # The cluster's registry keeps the storage it was first given and refuses any other.
    storage = option_value(args, "--storage")
    assert storage in (None, env["DTRAIN_STORAGE"])


def test_rayjob_workers_fit_the_worker_pods_one_cpu_each():
    args = entrypoint_args(one(manifests("rayjob.yaml"), "RayJob")["spec"]["entrypoint"])
    workers = int(option_value(args, "--workers") or 8)
    groups = one(manifests("raycluster.yaml"), "RayCluster")["spec"]["workerGroupSpecs"]
    cpus = sum(g["replicas"] * float(g["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]) for g in groups)
    assert cpus >= workers


def test_manifests_run_the_image_the_dockerfile_builds():
    docs = manifests("raycluster.yaml")
    images = {c["image"] for pod in pod_specs(one(docs, "RayCluster")) for c in pod["containers"]}
    assert images == {IMAGE}
    text = dockerfile()
    assert f"docker build -f deploy/Dockerfile -t {IMAGE} ." in text
    assert f'org.opencontainers.image.version="{VERSION}"' in text
    readme = (DEPLOY / "README.md").read_text()
    assert f"docker build -f deploy/Dockerfile -t {IMAGE} ." in readme or f"-t $REGISTRY/{IMAGE}" in readme


def test_dockerfile_builds_on_the_pinned_ray_image():
    text = dockerfile()
    ray_version = dockerfile_ray_version()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms == ["rayproject/ray:${RAY_VERSION}-py311"]
    # The Ray the image pins satisfies the package's own requirement on Ray.
    (ray_req,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"] if Requirement(r).name == "ray"]
    assert ray_req.specifier.contains(ray_version), f"pyproject wants {ray_req}, the image has Ray {ray_version}"
    assert f'"ray[default]==${{RAY_VERSION}}"' in text


def test_dockerfile_installs_the_package_not_editable_with_its_data():
    text = dockerfile()
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*\.\s+(\S+)$", text, re.M)
    assert len(copies) == 1, "expected one `COPY . DIR` of the repository"
    src = copies[0]
    run = " ".join(re.findall(r"^RUN\s+((?:.*\\\n)*.*)$", text, re.M)).replace("\\\n", " ")
    words = shlex.split(run)
    i = words.index("install")
    assert words[i - 1] == "pip"
    assert "-e" not in words and "--editable" not in words
    assert src in words[i:], "pip install should install the copied source"
    assert f"rm -rf {src}" in run, "the source copy should go, so only the installed package runs"
    # The shipped MNIST goes into the installed package: package data, not excluded from the context.
    assert PYPROJECT["tool"]["setuptools"]["package-data"]["dtrain.data"] == ["*.gz", "SHA256SUMS"]
    shipped = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "data").glob("*.gz"))
    assert len(shipped) == 4
    ignored = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in shipped + ["pyproject.toml", "data/SHA256SUMS", "__init__.py"]:
        for pattern in ignored:
            bare = pattern.removeprefix("**/")
            assert not (fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, bare) or path.startswith(pattern + "/")), (
                f"Dockerfile.dockerignore pattern {pattern!r} drops {path}"
            )
    # ... and the build checks it is there, by loading it from the installed package.
    assert "dtrain show" in run


def test_dtrain_version_is_the_one_deployed():
    assert __version__ == VERSION
    assert "dtrain" in PYPROJECT["project"]["scripts"]


def readme_dtrain_commands() -> list[list[str]]:
    """Every `dtrain ...` command in deploy/README.md's code blocks, including those inside `ray exec '...'`."""
    text = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", text, re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            for i, word in enumerate(words):
                if word == "dtrain" and (i == 0 or words[i - 1] in {"--", "&&", ";", "|"}):
                    rest = words[i + 1 :]
                    end = next((j for j, w in enumerate(rest) if w in {"|", "&&", ";", ">", "2>&1"}), len(rest))
                    commands.append(rest[:end])
                elif word.startswith("dtrain "):
                    commands.append(shlex.split(word)[1:])
    return commands


def test_readme_dtrain_commands_parse_with_the_real_cli():
    commands = readme_dtrain_commands()
    assert len(commands) >= 5, commands
    for args in commands:
        parse_dtrain(args)
