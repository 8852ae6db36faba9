"""The cluster definitions under cluster/: they validate, they point at real entry points and config files
of this repository, their uploads leave large artefacts behind, and they hold no credential, no personal
path and no package-registry host. Static checks only: nothing here starts Ray or a container."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
RAYJOBS = sorted(KUBERAY.glob("rayjob-*.yaml"))
RUNTIME_ENVS = sorted((CLUSTER / "runtime_env").glob("*.yaml"))
# Every repository path that the RayJobs start or read. The test of each one fails until it exists.
ENTRYPOINT_PATHS = [
    "pipelines/build_dataset.py",
    "configs/dataset/paper.yaml",
    "gadms/train/__main__.py",
    "configs/train/pretrain.yaml",
    "tune/sweep_masking.py",
    "configs/tune/masking.yaml",
]
# What a job's upload must leave behind (relative to the repository root), and what it must carry.
NEVER_UPLOADED = [".git", ".venv", ".venv-vllm", ".lock-venv", "outputs", "data", "ray_results"]
ALWAYS_UPLOADED = ["pyproject.toml", "gadms/data/__init__.py", "pipelines/templates/bank.jsonl", "configs/dataset/paper.yaml"]
MAX_UPLOAD_BYTES = 50 * 2**20


def load(path: Path):
    return yaml.safe_load(path.read_text())


def cluster_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


# --- cluster/aws.yaml ------------------------------------------------------------------------------


def test_aws_yaml_validates_against_the_schema_shipped_with_ray():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(load(CLUSTER / "aws.yaml"), schema)


def test_aws_yaml_passes_rays_own_checks_after_defaults():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load(CLUSTER / "aws.yaml")))


def test_aws_yaml_node_groups_and_s3_access():
    cfg = load(CLUSTER / "aws.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0 and not head["resources"].get("GPU"), "the head runs no tasks"
    workers = {name: t for name, t in types.items() if name != cfg["head_node_type"]}
    cpu = [t for t in workers.values() if not t["resources"].get("GPU")]
    gpu = [t for t in workers.values() if t["resources"].get("GPU")]
    assert cpu and all(t["min_workers"] < t["max_workers"] for t in cpu), "an autoscaling CPU group"
    assert any(t["resources"]["GPU"] == 8 for t in gpu), "an 8-GPU training group"
    assert len(gpu) >= 2, "GPU groups for MLLM inference and for training"
    for name, t in types.items():
        node = t["node_config"]
        assert "IamInstanceProfile" in node, f"{name}: S3 and EC2 access come from an instance profile"
        assert not any("key" in k.lower() and k != "KeyName" for k in node), f"{name}: no keys in node_config"
    setup = " ".join(cfg["setup_commands"])
    assert "[gpu]" in setup and "constraints-gpu.txt" in setup
    assert (CLUSTER / "constraints-gpu.txt").is_file()


# --- KubeRay -------------------------------------------------------------------------------------


def pod_specs(cluster_spec: dict) -> dict[str, dict]:
    specs = {"head": cluster_spec["headGroupSpec"]["template"]["spec"]}
    specs.update({g["groupName"]: g["template"]["spec"] for g in cluster_spec.get("workerGroupSpecs", [])})
    return specs


def all_cluster_specs() -> dict[str, dict]:
    specs = {"raycluster.yaml": load(KUBERAY / "raycluster.yaml")["spec"]}
    specs.update({p.name: load(p)["spec"]["rayClusterSpec"] for p in RAYJOBS})
    return specs


def test_kuberay_manifests_parse_and_have_the_expected_kinds():
    kinds = {p.name: [d["kind"] for d in yaml.safe_load_all(p.read_text())] for p in KUBERAY.glob("*.yaml")}
    assert kinds.pop("raycluster.yaml") == ["RayCluster"]
    assert kinds.pop("serviceaccount.yaml") == ["ServiceAccount"]
    assert {name: k for name, k in kinds.items()} == {
        "rayjob-dataset.yaml": ["RayJob"], "rayjob-pretrain.yaml": ["RayJob"], "rayjob-sweep.yaml": ["RayJob"],
    }  # fmt: skip
    for p in KUBERAY.glob("*.yaml"):
        for doc in yaml.safe_load_all(p.read_text()):
            assert doc["apiVersion"] == ("v1" if doc["kind"] == "ServiceAccount" else "ray.io/v1"), p.name


def test_raycluster_has_the_groups_of_aws_yaml():
    aws_groups = set(load(CLUSTER / "aws.yaml")["available_node_types"]) - {"head"}
    groups = {g["groupName"] for g in load(KUBERAY / "raycluster.yaml")["spec"]["workerGroupSpecs"]}
    assert groups == aws_groups


def test_every_pod_runs_one_image_one_ray_version_and_the_s3_service_account():
    images, versions = set(), set()
    for name, spec in all_cluster_specs().items():
        versions.add(spec["rayVersion"])
        assert spec.get("authOptions", {}).get("mode") == "token", name
        for group, pod in pod_specs(spec).items():
            assert pod["serviceAccountName"] == "gadms-ray", f"{name}/{group}"
            images.update(c["image"] for c in pod["containers"])
            if any("nvidia.com/gpu" in c["resources"]["limits"] for c in pod["containers"]):
                assert pod.get("tolerations") and pod.get("nodeSelector"), f"{name}/{group}"
    assert len(images) == 1, images
    pinned = re.search(r"^ray==(\S+)$", (CLUSTER / "constraints-gpu.txt").read_text(), re.M).group(1)
    assert versions == {pinned} == {ray.__version__}


def entrypoint(job: Path) -> list[str]:
    return shlex.split(load(job)["spec"]["entrypoint"])


def repo_paths_of(argv: list[str]) -> list[str]:
    """The files an entry point starts and reads: its script or module and its --config."""
    assert argv[0] == "python", argv
    paths = []
    if argv[1] == "-m":
        module = ROOT / argv[2].replace(".", "/")
        paths.append(str((module / "__main__.py" if module.is_dir() else module.with_suffix(".py")).relative_to(ROOT)))
    else:
        paths.append(argv[1])
    paths.append(argv[argv.index("--config") + 1])
    return paths


def test_rayjob_entrypoints_name_exactly_the_listed_paths():
    named = [p for job in RAYJOBS for p in repo_paths_of(entrypoint(job))]
    assert sorted(named) == sorted(ENTRYPOINT_PATHS)


@pytest.mark.parametrize("path", ENTRYPOINT_PATHS)
def test_entrypoint_path_exists(path):
    assert (ROOT / path).is_file(), f"{path} is started or read by a RayJob in cluster/kuberay/ but does not exist"


def test_dataset_job_command_line_is_a_valid_config():
    from gadms.config import load_config
    from pipelines.dataset.config import DatasetJobConfig

    argv = entrypoint(KUBERAY / "rayjob-dataset.yaml")
    cfg = load_config(DatasetJobConfig, ROOT / argv[argv.index("--config") + 1], argv[argv.index("--config") + 2 :])
    assert cfg.input.startswith("s3://") and cfg.output.startswith("s3://")


def test_pretrain_job_command_line_is_a_valid_config():
    config = ROOT / "configs/train/pretrain.yaml"
    if not config.is_file():
        pytest.fail("configs/train/pretrain.yaml does not exist (see test_entrypoint_path_exists)")
    from gadms.config import load_config
    from gadms.train.config import TrainJobConfig

    argv = entrypoint(KUBERAY / "rayjob-pretrain.yaml")
    assert argv[1:3] == ["-m", "gadms.train"]
    cfg = load_config(TrainJobConfig, config, argv[argv.index("--config") + 2 :])
    assert cfg.run.storage_path.startswith("s3://") and cfg.data.uri.startswith("s3://")


# --- runtime environments --------------------------------------------------------------------------


def uploaded_files(excludes: list[str]) -> dict[str, int]:
    """The files `ray job submit` would upload from the repository root with these excludes, using Ray's
    own traversal (.gitignore switched off: the excludes alone must keep large artefacts out)."""
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    files: dict[str, int] = {}

    def handler(path: Path):
        if path.is_file():
            files[str(path.relative_to(ROOT))] = path.stat().st_size

    _dir_travel(ROOT, [_get_excludes(ROOT, excludes)], handler, include_gitignore=False)
    return files


def rayjob_runtime_env(job: Path) -> dict:
    return yaml.safe_load(load(job)["spec"]["runtimeEnvYAML"])


@pytest.mark.parametrize("path", RUNTIME_ENVS, ids=lambda p: p.name)
def test_runtime_env_file_is_valid_and_leaves_large_artefacts_behind(path):
    from ray.runtime_env import RuntimeEnv

    env = load(path)
    RuntimeEnv(**env)  # Ray's own validation of the fields
    assert env["working_dir"] == "."
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    files = uploaded_files(env["excludes"])
    for name in files:
        assert name.split("/")[0] not in NEVER_UPLOADED, name
    for name in ALWAYS_UPLOADED:
        assert name in files, f"{name} would not be uploaded"
    assert sum(files.values()) < MAX_UPLOAD_BYTES


@pytest.mark.parametrize("job", RAYJOBS, ids=lambda p: p.name)
def test_rayjob_runtime_env_uploads_the_image_checkout_with_the_same_excludes(job):
    env = rayjob_runtime_env(job)
    assert env["working_dir"] == "/opt/gadms"
    assert "WORKDIR /opt/gadms" in (CLUSTER / "Dockerfile").read_text()
    assert env["excludes"] == load(CLUSTER / "runtime_env" / "aws.yaml")["excludes"]


def test_only_the_s3_compatible_runtime_env_names_an_endpoint():
    for path in RUNTIME_ENVS:
        has_endpoint = "AWS_ENDPOINT_URL" in load(path)["env_vars"]
        assert has_endpoint == (path.name == "s3-compatible.yaml"), path.name


def test_dockerfile_installs_the_gpu_extra_on_a_cuda_base():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+$", text, re.M) and "FROM ${CUDA_IMAGE}" in text
    assert 'pip install -c cluster/constraints-gpu.txt ".[gpu]"' in text
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv*", "outputs", "data"} <= set(ignored)


# --- nothing personal, secret or registry-bound ------------------------------------------------------

CREDENTIAL_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),  # AWS access key ids
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*\S"),
    re.compile(r"(?i)aws_session_token\s*[:=]\s*\S"),
    re.compile(r"(?i)\b(?:password|passwd|secret|api[_-]?key)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{8,}"),
    re.compile(r"(?i)\bauth_token\s*[:=]\s*['\"]?[A-Za-z0-9]{16,}"),
]
SECRET_LIKE = re.compile(r"(?<![A-Za-z0-9/+=_-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_-])")
PERSONAL_PATH = re.compile(r"/home/|/Users/|[A-Za-z]:\\Users\\")
HOST = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|org|io|net|dev|ai|co|cn|cloud|sh)\b", re.I)
# Host-like names that are identifiers, not places to download from: IAM service principals and the
# Kubernetes / KubeRay / NVIDIA API groups.
ALLOWED_HOSTS = {"ec2.amazonaws.com", "eks.amazonaws.com", "ray.io", "nvidia.com", "node.kubernetes.io"}


@pytest.mark.parametrize("path", cluster_files(), ids=lambda p: str(p.relative_to(CLUSTER)))
def test_no_credential_personal_path_or_registry_host(path):
    text = path.read_text()
    for pattern in CREDENTIAL_PATTERNS:
        assert not pattern.search(text), f"{path.name}: credential-looking text {pattern.search(text).group(0)!r}"
    for token in SECRET_LIKE.findall(text):
        mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)
        assert not mixed, f"{path.name}: secret-looking string {token!r}"
    assert not PERSONAL_PATH.search(text), f"{path.name}: a personal path"
    hosts = {m.group(0).lower() for m in HOST.finditer(text)}
    assert hosts <= ALLOWED_HOSTS, f"{path.name}: host names {sorted(hosts - ALLOWED_HOSTS)}"


def test_every_value_to_fill_in_reads_change_me():
    """Placeholders have one spelling, so `grep -rn CHANGE-ME cluster/` lists what a user must set."""
    for path in cluster_files():
        text = path.read_text()
        assert not re.search(r"<[A-Z_ -]+>|\bYOUR[_-]|\bxxx+\b|\bTODO\b|\bFIXME\b", text), path.name


def test_cluster_readme_mentions_only_files_that_exist():
    text = (CLUSTER / "README.md").read_text()
    named = set(re.findall(r"(?<![\w/.-])((?:cluster|configs|pipelines|tune|gadms|tests)/[\w./-]*\w)", text))
    assert named, "the README names the cluster files"
    missing = sorted(p for p in named if not (ROOT / p).exists() and not any(ch in p for ch in "*<"))
    assert not missing, f"cluster/README.md names files that do not exist: {missing}"
