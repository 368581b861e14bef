"""docker/: the compose file describes a 3-node JetStream cluster, MinIO and workers.

No Docker engine runs these tests; they read the compose file and the nats-server configs it
mounts, and check that the pieces fit: the three nodes route to each other, JetStream is on
everywhere, riverrun is configured for R3, and the worker waits for NATS and MinIO.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

DOCKER = Path(__file__).resolve().parent.parent / "docker"
NATS_NODES = ("nats-1", "nats-2", "nats-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def mounted_config(service: dict[str, Any]) -> str:
    """The nats-server config file the service is started with, read from docker/."""
    command = service["command"]
    config_path = command[command.index("--config") + 1]
    for volume in service["volumes"]:
        source, target = volume.split(":")[:2]
        if target == config_path:
            return (DOCKER / source).read_text()
    raise AssertionError(f"{config_path} is not mounted into the service")


def block(config: str, name: str) -> str:
    """The text of the top-level ``name { ... }`` block (nats config blocks nest shallowly)."""
    match = re.search(rf"^{name}\s*\{{(.*?)^\}}", config, re.S | re.M)
    assert match is not None, f"no {name} block"
    return match.group(1)


def setting(text: str, key: str) -> str | None:
    match = re.search(rf"^\s*{key}\s*[:=]\s*(\S+)", text, re.M)
    return match.group(1).strip("\"'") if match else None


def image_version(image: str) -> tuple[int, ...]:
    tag = image.rsplit(":", 1)[1]
    match = re.match(r"(\d+)\.(\d+)", tag)
    assert match is not None, f"unpinned image {image}"
    return tuple(int(g) for g in match.groups())


@pytest.mark.parametrize("node", NATS_NODES)
def test_each_node_runs_nats_2_12_or_newer(services: dict[str, Any], node: str) -> None:
    image = services[node]["image"]
    assert image.startswith("nats:")
    assert image_version(image) >= (2, 12)


@pytest.mark.parametrize("node", NATS_NODES)
def test_each_node_has_jetstream_with_a_persistent_store(
    services: dict[str, Any], node: str
) -> None:
    config = mounted_config(services[node])
    jetstream = block(config, "jetstream")
    store_dir = setting(jetstream, "store_dir")
    assert store_dir is not None
    mounts = [v.split(":")[1] for v in services[node]["volumes"]]
    assert any(store_dir.startswith(m) for m in mounts), "store_dir must be on a volume"
    assert setting(jetstream, "sync_interval") == "always"


@pytest.mark.parametrize("node", NATS_NODES)
def test_each_node_routes_to_the_other_two(services: dict[str, Any], node: str) -> None:
    config = mounted_config(services[node])
    assert setting(config, "server_name") == node
    cluster = block(config, "cluster")
    assert setting(cluster, "name") == "riverrun"
    routes = set(re.findall(r"nats-route://([\w-]+):(\d+)", cluster))
    for other in NATS_NODES:
        if other == node:
            continue
        other_cluster = block(mounted_config(services[other]), "cluster")
        other_port = setting(other_cluster, "listen")
        assert other_port is not None
        assert (other, other_port.rsplit(":", 1)[1]) in routes


def test_server_names_are_unique(services: dict[str, Any]) -> None:
    names = [setting(mounted_config(services[n]), "server_name") for n in NATS_NODES]
    assert len(set(names)) == 3


def test_minio_is_present_with_a_bucket(services: dict[str, Any]) -> None:
    assert services["minio"]["image"].startswith("minio/minio")
    assert "server" in services["minio"]["command"]
    init = " ".join(services["minio-init"]["command"])
    assert "mc mb" in init and "local/riverrun" in init


def test_worker_depends_on_the_cluster_and_minio(services: dict[str, Any]) -> None:
    depends = services["worker"]["depends_on"]
    assert {*NATS_NODES, "minio", "minio-init"} <= set(depends)
    for node in NATS_NODES:
        assert depends[node]["condition"] == "service_healthy"


def test_worker_uses_all_three_nodes_and_r3(services: dict[str, Any]) -> None:
    env = services["worker"]["environment"]
    servers = env["RIVERRUN_SERVERS"].split(",")
    assert {f"nats://{n}:4222" for n in NATS_NODES} == set(servers)
    assert env["RIVERRUN_REPLICAS"] == "3"
    assert env["RIVERRUN_S3_BUCKET"] == "riverrun"
    assert env["RIVERRUN_S3_ENDPOINT_URL"].startswith("http://minio:")


def test_worker_image_installs_riverrun_and_runs_the_worker(services: dict[str, Any]) -> None:
    worker = services["worker"]
    context = (DOCKER / worker["build"]["context"]).resolve()
    assert context == DOCKER.parent  # built from the repository root, to install riverrun
    text = (context / worker["build"]["dockerfile"]).read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert 'ENTRYPOINT ["riverrun"]' in text
    assert worker["command"][0] == "worker"
    assert worker["stop_signal"] == "SIGTERM"


def test_the_worker_default_module_exists() -> None:
    # the image's default command hosts the demo workflow; it must be importable by that name
    text = (DOCKER / "Dockerfile").read_text()
    assert 'CMD ["worker", "riverrun.cli._demo"]' in text
    assert (DOCKER.parent / "riverrun" / "cli" / "_demo.py").is_file()
