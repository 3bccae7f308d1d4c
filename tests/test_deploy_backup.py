"""The shipped backups, statically: the systemd timer and service, and the Kubernetes CronJob.

`make test-deploy` runs the service for real (tests/deploy/test_systemd_backup.py) and validates
the CronJob against Kubernetes' schemas (tests/deploy/test_kubernetes.py).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from proxy.cli import _parser
from tests.test_deploy import DEPLOY, REPO, load_docs, parse_unit, unit, unit_value, unit_values
from tests.test_deploy_kubernetes import EXAMPLES, doc_of, statefulset, wheelwell_container

SYSTEMD = DEPLOY / "systemd"
SERVICE = SYSTEMD / "wheelwell-backup.service"
TIMER = SYSTEMD / "wheelwell-backup.timer"
CRONJOB = EXAMPLES / "backup-cronjob.yaml"
#: the main unit's hardening the backup keeps, with the same values
SHARED_HARDENING = (
    "NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices",
    "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
    "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset", "RestrictNamespaces",
    "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
    "RemoveIPC", "SystemCallArchitectures", "SystemCallErrorNumber",
)  # fmt: skip


def backup() -> dict[str, list[tuple[str, str]]]:
    return parse_unit(SERVICE.read_text(encoding="utf-8"))


def _export_argv(script: str) -> list[str]:
    """The `wheelwell export …` line of a shell script, with its $(date …) as a fixed name."""
    (line,) = [ln for ln in script.splitlines() if "wheelwell export" in ln]
    words = shlex.split(line.replace("$(date -u +%%Y%%m%%dT%%H%%M%%SZ)", "D").replace(
        "$(date -u +%Y%m%dT%H%M%SZ)", "D"
    ))  # fmt: skip
    return words[words.index("export") - 1 :]


def test_backup_service_exports_the_main_units_data_dir_into_its_own_state_dir() -> None:
    service = backup()
    assert unit_value(service, "Type") == "oneshot"
    (exec_start,) = unit_values(service, "ExecStart")
    shell, flag, script = shlex.split(exec_start)
    assert (shell, flag) == ("/bin/sh", "-c")
    program, *argv = _export_argv(script)
    assert Path(program) == Path("/opt/wheelwell/bin/wheelwell")  # the main unit's venv
    args = _parser().parse_args(argv)
    assert args.command == "export"
    main_data_dir = Path("/var/lib") / unit_value(unit(), "StateDirectory")
    assert args.data_dir == main_data_dir
    backups = Path("/var/lib") / unit_value(service, "StateDirectory")
    assert args.dest.parent == backups and args.dest.name.endswith(".tar.zst")
    assert unit_value(service, "StateDirectoryMode") == "0700"
    assert unit_value(service, "UMask") == "0077"
    assert f"find {backups} " in unit_value(service, "ExecStartPost")  # retention


def test_backup_service_cannot_write_the_data_dir_and_has_one_read_capability() -> None:
    service = backup()
    read_only = unit_value(service, "ReadOnlyPaths").split()
    assert "-/var/lib/wheelwell" in read_only and "-/var/lib/private/wheelwell" in read_only
    assert unit_value(service, "CapabilityBoundingSet") == "CAP_DAC_READ_SEARCH"
    assert unit_value(service, "AmbientCapabilities") == ""
    assert unit_value(service, "PrivateNetwork") == "yes"  # an export needs none
    assert unit_value(service, "RestrictAddressFamilies") == "AF_UNIX"
    assert int(unit_value(service, "LimitNOFILE")) >= 65536  # --include-mirror holds files


def test_backup_service_keeps_the_main_units_hardening() -> None:
    main, service = unit(), backup()
    for key in SHARED_HARDENING:
        assert unit_values(service, key) == unit_values(main, key), key
    assert unit_values(service, "SystemCallFilter") == unit_values(main, "SystemCallFilter")


def test_timer_starts_the_service_daily_and_catches_up_after_downtime() -> None:
    timer = parse_unit(TIMER.read_text(encoding="utf-8"))
    settings = dict(timer["Timer"])
    assert settings["OnCalendar"] == "daily"
    assert settings["Persistent"] == "true"
    assert "Unit" not in settings  # the service of the same name
    assert dict(timer["Install"])["WantedBy"] == "timers.target"
    assert "After=wheelwell.service" in SERVICE.read_text()


def _cron_pod() -> dict[str, Any]:
    pod = doc_of(CRONJOB, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert isinstance(pod, dict)
    return pod


def test_cronjob_mounts_the_primarys_claim_read_only_on_its_node() -> None:
    pod = _cron_pod()
    (template,) = statefulset()["spec"]["volumeClaimTemplates"]
    claim = f"{template['metadata']['name']}-{statefulset()['metadata']['name']}-0"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"]["readOnly"] is True
    served = {m["name"]: m["mountPath"] for m in wheelwell_container()["volumeMounts"]}
    assert mounts["data"]["mountPath"] == served["data"]
    (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == {
        "statefulset.kubernetes.io/pod-name": "wheelwell-0"
    }
    assert term["topologyKey"] == "kubernetes.io/hostname"
    claims = {d["metadata"]["name"] for d in _docs() if d["kind"] == "PersistentVolumeClaim"}
    assert volumes["backups"]["persistentVolumeClaim"]["claimName"] in claims


def _docs() -> list[dict[str, Any]]:
    return load_docs(CRONJOB)


def test_cronjob_runs_the_export_with_the_servers_image_and_identity() -> None:
    cron = doc_of(CRONJOB, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _cron_pod()
    (container,) = pod["containers"]
    assert container["image"] == wheelwell_container()["image"]
    assert pod["automountServiceAccountToken"] is False
    served = statefulset()["spec"]["template"]["spec"]["securityContext"]
    assert pod["securityContext"]["runAsUser"] == served["runAsUser"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    shell, flag, script = container["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    program, *argv = _export_argv(script)
    args = _parser().parse_args(argv)
    assert (program, args.command, args.data_dir) == ("wheelwell", "export", Path("/data"))
    assert args.dest.parent == Path("/backups")
    policy = doc_of(CRONJOB, "NetworkPolicy")["spec"]
    labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy and "egress" not in policy  # nothing in, nothing out


def test_backup_docs_name_the_shipped_files() -> None:
    text = (REPO / "docs" / "backup.md").read_text(encoding="utf-8")
    for path in (SERVICE, TIMER, CRONJOB):
        assert str(path.relative_to(REPO)) in text
