"""`make test-deploy`: the deploy files run by real engines (podman, systemd-nspawn, Prometheus).

Not part of `make test` (tests/conftest.py leaves this directory out unless
WHEELWELL_TEST_DEPLOY=1): these checks take minutes and need root and Debian packages. Each one
skips with one line naming what the machine lacks.
"""

from __future__ import annotations

import os
import shutil

import pytest


def need(*commands: str) -> None:
    """Skip the calling test, naming the first of `commands` this machine does not have."""
    for command in commands:
        if shutil.which(command) is None:
            pytest.skip(f"{command} is not installed (make deploy-tools installs it)")


def need_root() -> None:
    """Skip unless running as root: podman's rootful mode and systemd-nspawn need it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (podman rootful mode, systemd-nspawn)")
