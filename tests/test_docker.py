"""docker/: the compose file describes a 3-node JetStream cluster, MinIO and workers.

No Docker engine runs these tests; they read the compose file and the nats-server configs it
mounts, and check that the pieces fit: the three nodes route to each other, JetStream is on
everywhere, riverrun is configured for R3, and the worker waits for NATS and MinIO. Then they
start the three nodes from those very config files (addresses and paths rewritten for one
host) with the nats-server binary, and run a riverrun worker and client on them with R3.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
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


# -- the same nats configs, run for real ---------------------------------------------------
#
# No Docker here, but the nats-server binary is: start the three nodes from the compose
# file's own config files, with only addresses and paths rewritten for one host, and run a
# riverrun worker and client on them with R3 streams, as the compose file configures.


#: attempts to bring the cluster up while another process takes a route port first
CLUSTER_ATTEMPTS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def localize(config: str, routes: dict[str, int], node: str, store: Path, ports_dir: Path) -> str:
    """The node's config with container addresses mapped to loopback ports and a local store.

    The client and monitoring ports are -1 (the server binds free ones itself and writes them
    to a ports file in ``ports_dir``); the route ports are fixed, since every node's routes
    name every node's."""
    config = re.sub(r"^listen: .*$", "listen: 127.0.0.1:-1", config, flags=re.M)
    config = re.sub(r"^http: .*$", "http: 127.0.0.1:-1", config, flags=re.M)
    config = re.sub(
        r"^(\s*)listen: 0\.0\.0\.0:6222$",
        rf"\1listen: 127.0.0.1:{routes[node]}",
        config,
        flags=re.M,
    )
    config = re.sub(r"store_dir: .*", f'store_dir: "{store}"', config)
    for other, port in routes.items():
        config = config.replace(f"nats-route://{other}:6222", f"nats-route://127.0.0.1:{port}")
    return config + f'\nports_file_dir: "{ports_dir}"\n'


class PortTaken(Exception):
    """A node exited: another process took its route port between choice and listen."""


def wait_ports(ports_dir: Path, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The node's ports file, once written (bounded polling, not a timing assertion)."""
    for _ in range(600):
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            if "address already in use" in text:
                raise PortTaken(text)
            raise AssertionError(f"nats-server exited:\n{text}")
        for path in ports_dir.glob(f"*_{process.pid}.ports"):
            try:
                found: dict[str, Any] = json.loads(path.read_text())
                return found
            except ValueError:
                pass  # still being written
        time.sleep(0.05)
    raise AssertionError(f"nats-server never wrote its ports file:\n{log.read_text()}")


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    # readiness of servers we just started (bounded polling, not a timing assertion)
    for _ in range(600):
        assert process.poll() is None, "nats-server exited"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} never became healthy")


def start_cluster(
    binary: str,
    services: dict[str, Any],
    root: Path,
    processes: list[subprocess.Popen[bytes]],
) -> list[str]:
    """Start the three nodes (appended to ``processes``); their client URLs once healthy."""
    routes = {n: free_port() for n in NATS_NODES}
    found: dict[str, dict[str, Any]] = {}
    for node in NATS_NODES:
        ports_dir = root / f"{node}-ports"
        ports_dir.mkdir()
        config = localize(mounted_config(services[node]), routes, node, root / node, ports_dir)
        path = root / f"{node}.conf"
        path.write_text(config)
        log = root / f"{node}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, "-c", str(path)], stdout=out, stderr=subprocess.STDOUT
            )
        processes.append(process)
        found[node] = wait_ports(ports_dir, process, log)
    for node, process in zip(NATS_NODES, processes, strict=True):
        # /healthz answers ok once JetStream is current with the cluster's meta leader
        wait_healthy(f"{found[node]['monitoring'][0]}/healthz", process)
    return [found[n]["nats"][0] for n in NATS_NODES]


def stop_cluster(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(30)
    processes.clear()


@pytest.fixture(scope="module")
def local_cluster(
    services: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    from riverrun.persistence._embedded import find_nats_server

    binary = str(find_nats_server())
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for attempt in range(1, CLUSTER_ATTEMPTS + 1):
            try:
                urls = start_cluster(
                    binary, services, tmp_path_factory.mktemp("cluster"), processes
                )
                break
            except PortTaken as exc:
                stop_cluster(processes)
                if attempt == CLUSTER_ATTEMPTS:
                    raise AssertionError(f"route ports taken {attempt} times:\n{exc}") from None
        yield urls
    finally:
        stop_cluster(processes)


def test_the_configs_are_valid_nats_server_configs(
    services: dict[str, Any], tmp_path: Path
) -> None:
    from riverrun.persistence._embedded import find_nats_server

    for node in NATS_NODES:
        path = tmp_path / f"{node}.conf"
        path.write_text(mounted_config(services[node]))
        checked = subprocess.run(
            [str(find_nats_server()), "-t", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 0 == checked.returncode, checked.stdout + checked.stderr


def test_riverrun_runs_on_the_cluster_with_r3_streams(
    services: dict[str, Any], local_cluster: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RIVERRUN_", "AWS_"))}
    worker_env = services["worker"]["environment"]
    env.update(
        RIVERRUN_SERVERS=",".join(local_cluster),
        RIVERRUN_NAMESPACE=f"compose-{uuid.uuid4().hex[:8]}",
        RIVERRUN_REPLICAS=worker_env["RIVERRUN_REPLICAS"],
    )
    root = Path(__file__).resolve().parent.parent
    worker = subprocess.Popen(
        [sys.executable, "-m", "riverrun", "worker", "tests.cli.workflows"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()
        assert "hosting" in first, first + worker.stderr.read()
        started = subprocess.run(
            [
                sys.executable,
                "-m",
                "riverrun",
                "start",
                "countdown",
                '{"n": 2}',
                "--wait",
                "--json",
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == started.returncode, started.stderr
        assert {"total": 3} == json.loads(started.stdout)["result"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert 0 == worker.returncode

    # the streams riverrun created are R3, spread over the three nodes
    namespace = env["RIVERRUN_NAMESPACE"].upper().replace("-", "_")
    stream = f"RIVERRUN_{namespace}_EVENTS"
    info = _stream_info(local_cluster[0], stream)
    assert 3 == info["config"]["num_replicas"]
    assert 2 == len(info["cluster"]["replicas"])  # the leader plus two replicas


def _stream_info(url: str, stream: str) -> dict[str, Any]:
    import nats

    async def ask() -> dict[str, Any]:
        nc = await nats.connect(url)
        try:
            reply = await nc.request(f"$JS.API.STREAM.INFO.{stream}", b"", timeout=10)
            data: dict[str, Any] = json.loads(reply.data)
            return data
        finally:
            await nc.close()

    return anyio.run(ask)


def test_a_route_port_taken_first_is_told_apart_so_the_cluster_is_started_again(
    services: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from riverrun.persistence._embedded import find_nats_server

    processes: list[subprocess.Popen[bytes]] = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # another process takes the route port chosen for nats-1 before nats-1 listens on it
        monkeypatch.setattr(sys.modules[__name__], "free_port", lambda: port)
        try:
            with pytest.raises(PortTaken, match="address already in use"):
                start_cluster(str(find_nats_server()), services, tmp_path, processes)
        finally:
            stop_cluster(processes)
