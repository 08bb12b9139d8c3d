"""The host checks a stored target only through the check a publisher registers (entry point
group ``hostspec.target_checks``); it never imports a publisher itself."""
from __future__ import annotations

import configparser
import importlib
from pathlib import Path

from hostspec.config.policy import SettingsPolicy
from hostspec.config.targets import ENTRY_POINT_GROUP, target_check

SETUP_CFG = Path(__file__).resolve().parents[3] / "setup.cfg"
TARGET = {"region": "eu", "client_id": "c", "client_secret": {"env": "CONNECTOR_SECRET_ACME__360"},
          "author_id": "65a0000000000000000000a1"}


def _registered() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(SETUP_CFG)
    lines = cfg["options.entry_points"][ENTRY_POINT_GROUP].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)


def test_the_publisher_registers_its_target_check():
    module, name = _registered()["360learning"].split(":")
    check = target_check(SettingsPolicy(), [getattr(importlib.import_module(module), name)])
    assert check is not None
    assert check("acme", TARGET, "acme") == {}
    assert set(check("acme", {**TARGET, "author_id": "nope"}, "acme")) == {"author_id"}


def test_without_a_registered_check_targets_are_stored_unchecked():
    assert target_check(SettingsPolicy(), []) is None


def test_every_registered_check_is_asked():
    def host(policy, name, target, tenant):
        return {"base_url": ["not allowed"]} if target.get("base_url") else {}

    def fields(policy, name, target, tenant):
        return {"client_id": ["missing"]} if "client_id" not in target else {}

    check = target_check(SettingsPolicy(), [host, fields])
    assert check("acme", {"base_url": "https://x"}, "acme") == {"base_url": ["not allowed"], "client_id": ["missing"]}
