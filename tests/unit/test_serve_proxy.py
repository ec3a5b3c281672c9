"""``deployment.proxy``: the environment Ray must start with, and the haproxy wrapper that
keeps HAProxy's catch-all listeners on the card's host (no Ray here)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mlsd_ray.errors import CardError
from mlsd_ray.serve.proxy import is_ours, proxy_env
from mlsd_ray.spec import load_card
from tests.conftest import REPO

CARD = REPO / "systems" / "harmful_content.yaml"


def test_default_and_direct_env():
    assert proxy_env(load_card(CARD, overrides=["deployment.proxy=default"])) == {}
    env = proxy_env(load_card(CARD, overrides=["deployment.proxy=direct"]))
    assert env == {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}


def test_auto_is_haproxy_on_free_loopback_ports(tmp_path: Path):
    card = load_card(CARD)
    assert card.deployment.proxy == "auto"
    env = proxy_env(card, tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    stats, metrics = (int(env[f"RAY_SERVE_HAPROXY_{k}_PORT"]) for k in ("STATS", "METRICS"))
    assert stats != metrics and 8404 not in (stats, metrics)  # chosen free, not Ray's fixed ones
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"].startswith(str(tmp_path))  # the loopback wrapper


def test_a_running_ray_keeps_its_proxy_for_auto_and_refuses_another(
    monkeypatch: pytest.MonkeyPatch,
):
    from mlsd_ray.serve.proxy import prepare

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # "connected": nothing may change now
    for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_ENABLE_DIRECT_INGRESS"):
        monkeypatch.delenv(key, raising=False)
    assert prepare(load_card(CARD)) == {}
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    with pytest.raises(CardError, match="started with the 'default' proxy"):
        prepare(load_card(CARD, overrides=["deployment.proxy=haproxy"]))


def test_a_bad_proxy_names_the_key():
    with pytest.raises(CardError, match=r"deployment\.proxy"):
        load_card(CARD, overrides=["deployment.proxy=nginx"])


def test_haproxy_env_is_private_and_binds_loopback(tmp_path: Path):
    card = load_card(
        CARD,
        overrides=[
            "deployment.proxy=haproxy",
            "deployment.haproxy.stats_port=18404",
            "deployment.haproxy.metrics_port=19101",
        ],
    )
    env = proxy_env(card, tmp_path)
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "19101"
    # Nothing in the shared /tmp/haproxy-serve of other Rays on the host.
    for key in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_BASE", "SERVER_STATE_FILE"):
        assert env[f"RAY_SERVE_HAPROXY_{key}"].startswith(str(tmp_path))
    # The wrapper rewrites the catch-all binds to 127.0.0.1, then runs the real haproxy
    # (here its config check, -c).
    cfg = tmp_path / "node" / "haproxy.cfg"
    cfg.parent.mkdir()
    cfg.write_text(
        "defaults\n  mode http\n  timeout client 1s\n  timeout server 1s\n  timeout connect 1s\n"
        "frontend stats\n  bind *:18404\n"
        "frontend metrics\n  bind :19101\n"
        "frontend http\n  bind 127.0.0.1:18000\n"
    )
    wrapper = env["RAY_SERVE_HAPROXY_BINARY_PATH"]
    run = subprocess.run([wrapper, "-c", "-f", str(cfg)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    binds = [line.strip() for line in cfg.read_text().splitlines() if "bind" in line]
    assert binds == ["bind 127.0.0.1:18404", "bind 127.0.0.1:19101", "bind 127.0.0.1:18000"]
    assert is_ours("haproxy", ["haproxy", "-f", str(cfg)], tmp_path)
    assert not is_ours("haproxy", ["haproxy", "-f", "/tmp/haproxy-serve/haproxy.cfg"], tmp_path)


def test_an_open_card_opens_haproxy_too(tmp_path: Path):
    card = load_card(CARD, overrides=["deployment.proxy=haproxy", "deployment.host=0.0.0.0"])
    assert "RAY_SERVE_HAPROXY_BINARY_PATH" not in proxy_env(card, tmp_path)
