# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ports_watcher module's core: the plan from file and service states (pure), the check by the
executable (the real watcher's --check, run as a script), atomic writes."""

import base64
import hashlib
import json
import os
import stat
import sys

import pytest

from module_utils import ports_watcher as pw
from module_utils.errors import ValidationError

PLUGINS = os.path.join(os.path.dirname(__file__), "..", "..", "plugins")
TASKS = [{"name": "web", "cgroup": "hostnet-tasks/web", "ports": "31000-31009"}]
CONFIG = {"mode": "audit", "watch_interval": 30, "agent_port_range": "31000-32000",
          "policy_dir": "/etc/hostnet/ports-watcher.d", "event_log": "/var/log/hostnet/ports-watcher.jsonl"}
UNIT = "[Service]\nExecStart=/usr/local/sbin/hostnet-ports-watcher\n"
RUNNING = {"LoadState": "loaded", "ActiveState": "active", "UnitFileState": "enabled", "MainPID": "42",
           "NeedDaemonReload": "no"}
STARTED = 1000.0  # when the main process started (the files below are older)


def params(**over):
    out = {"config": dict(CONFIG), "policy": list(TASKS), "unit": UNIT}
    out.update(over)
    return out


def installed(sp, **over):
    """The state of a host where ``sp`` is in place and the watcher runs."""
    files = dict((path, (text, 0o644)) for _field, path, text in sp.targets())
    kwargs = {"files": files, "service": dict(RUNNING), "main_started": STARTED,
              "mtimes": {"executable": 900.0, "config": 900.0, "unit": 900.0}}
    kwargs.update(over)
    return pw.State(**kwargs)


def kinds(pl):
    return [kind for kind, _argument, _sentence in pl.steps]


def test_in_place_the_plan_is_empty():
    sp = pw.spec(params())
    pl = pw.plan(sp, installed(sp))
    assert pl.steps == [] and not pl.changed and pl.diff == [] and pl.active_state == "active"


def test_a_fresh_host_gets_directories_files_and_a_started_enabled_service():
    sp = pw.spec(params())
    state = pw.State(missing_dirs=["/etc/hostnet", "/etc/hostnet/ports-watcher.d", "/var/log/hostnet"],
                     service={"LoadState": "not-found", "ActiveState": "inactive", "UnitFileState": ""})
    pl = pw.plan(sp, state)
    assert kinds(pl) == ["mkdir", "mkdir", "mkdir", "write", "write", "write", "daemon-reload", "enable", "start"]
    assert pl.changes[3:] == [
        "create /etc/hostnet/ports-watcher.json (config)",
        "create /etc/hostnet/ports-watcher.d/ansible.json (policy)",
        "create /etc/systemd/system/hostnet-ports-watcher.service (unit)",
        "systemctl daemon-reload (the unit changed)",
        "enable hostnet-ports-watcher.service",
        "start hostnet-ports-watcher.service (it is inactive)"]
    assert pl.active_state == "active"
    assert [d["after_header"] for d in pl.diff] == [path for _field, path, _text in sp.targets()]
    assert json.loads(pl.diff[1]["after"]) == TASKS and pl.diff[1]["before"] == ""


def test_a_configuration_change_restarts_and_does_not_also_reload():
    sp = pw.spec(params(config=dict(CONFIG, mode="enforce")))
    old = pw.spec(params())
    pl = pw.plan(sp, installed(old))
    assert kinds(pl) == ["write", "restart"]
    assert pl.changes[-1] == "restart hostnet-ports-watcher.service (its configuration changed)"
    assert '"mode": "audit"' in pl.diff[0]["before"] and '"mode": "enforce"' in pl.diff[0]["after"]


def test_a_policy_change_only_reloads():
    sp = pw.spec(params(policy=TASKS + [{"name": "api", "systemd_unit": "api.service", "ports": "31020"}]))
    pl = pw.plan(sp, installed(pw.spec(params())))
    assert kinds(pl) == ["write", "reload"]
    assert pl.changes == ["write /etc/hostnet/ports-watcher.d/ansible.json (policy)",
                          "reload hostnet-ports-watcher.service (its policy changed)"]


def test_a_unit_change_reloads_systemd_and_restarts():
    sp = pw.spec(params(unit=UNIT + "Restart=always\n", executable_changed=True))
    pl = pw.plan(sp, installed(pw.spec(params())))
    assert kinds(pl) == ["write", "daemon-reload", "restart"]
    assert pl.changes[-1] == "restart hostnet-ports-watcher.service (its unit and its executable changed)"


def test_systemds_stale_copy_of_the_unit_is_reloaded_without_a_restart():
    sp = pw.spec(params())
    pl = pw.plan(sp, installed(sp, service=dict(RUNNING, NeedDaemonReload="yes")))
    assert pl.changes == ["systemctl daemon-reload (systemd's copy of the unit is stale)"]


def test_a_new_executable_restarts():
    sp = pw.spec(params(executable_changed=True))
    pl = pw.plan(sp, installed(sp))
    assert pl.changes == ["restart hostnet-ports-watcher.service (its executable changed)"]


def test_an_executable_newer_than_the_running_process_restarts_it():
    """A run that failed between the copy and this module: the next run restarts the watcher anyway."""
    sp = pw.spec(params())
    pl = pw.plan(sp, installed(sp, mtimes={"executable": STARTED + 5, "config": 900.0, "unit": 900.0}))
    assert pl.changes == ["restart hostnet-ports-watcher.service (its executable is newer than its main process)"]
    assert pw.plan(sp, installed(sp, main_started=None)).steps == []  # not running: nothing to compare


def test_the_earlier_layouts_files_are_removed_and_the_policy_reloaded():
    sp = pw.spec(params(old_lib_dir="/usr/local/lib/hostnet-ports-watcher"))
    old = "/etc/hostnet/ports-watcher.d/ansible-web.json"
    state = installed(sp, old_policy=[(old, '{"name": "web"}\n')],
                      old_sources=["/usr/local/lib/hostnet-ports-watcher/src/hostnet_core"])
    pl = pw.plan(sp, state)
    assert kinds(pl) == ["remove", "remove", "reload"]
    assert pl.diff == [{"before_header": old, "after_header": old, "before": '{"name": "web"}\n', "after": ""}]


def test_a_wrong_mode_is_fixed_without_a_restart():
    sp = pw.spec(params())
    state = installed(sp)
    text = state.files[sp.config_file][0]
    state.files[sp.config_file] = (text, 0o600)
    assert pw.plan(sp, state).changes == ["set mode 0644 on /etc/hostnet/ports-watcher.json (was 0600)"]


def test_a_stopped_service_is_started_and_enabled():
    sp = pw.spec(params())
    pl = pw.plan(sp, installed(sp, service=dict(RUNNING, ActiveState="failed", UnitFileState="disabled")))
    assert pl.changes == ["enable hostnet-ports-watcher.service",
                          "start hostnet-ports-watcher.service (it is failed)"]


def test_state_stopped_stops_and_disables_and_leaves_the_files():
    sp = pw.spec({"state": "stopped"})
    pl = pw.plan(sp, pw.State(service=dict(RUNNING)))
    assert pl.changes == ["stop hostnet-ports-watcher.service", "disable hostnet-ports-watcher.service"]
    assert pl.active_state == "inactive"
    gone = pw.State(service={"LoadState": "not-found", "ActiveState": "inactive", "UnitFileState": ""})
    assert pw.plan(sp, gone).steps == []


EXE = b"#!/usr/bin/python3\nPK-the-watcher"


def test_new_executable_content_is_installed_and_restarts_the_watcher():
    sp = pw.spec(params(executable_content=base64.b64encode(EXE).decode()))
    pl = pw.plan(sp, installed(sp, executable_sha256=hashlib.sha256(b"the old one").hexdigest()))
    assert pl.changes == ["replace /usr/local/sbin/hostnet-ports-watcher (%d bytes)" % len(EXE),
                          "restart hostnet-ports-watcher.service (its executable changed)"]
    assert pl.steps[0][1] == ("/usr/local/sbin/hostnet-ports-watcher", EXE) and pl.installs_executable


def test_the_same_executable_content_changes_nothing():
    sp = pw.spec(params(executable_content=base64.b64encode(EXE).decode()))
    pl = pw.plan(sp, installed(sp, executable_sha256=hashlib.sha256(EXE).hexdigest()))
    assert pl.steps == [] and not pl.installs_executable


def test_a_fresh_host_gets_the_missing_packages_first_then_the_executable():
    sp = pw.spec(params(executable_content=base64.b64encode(EXE).decode(),
                        packages=["python3", "python3-prometheus-client"]))
    state = pw.State(missing_dirs=["/usr/local/sbin"], missing_packages=["python3-prometheus-client"],
                     service={"LoadState": "not-found", "ActiveState": "inactive", "UnitFileState": ""})
    pl = pw.plan(sp, state)
    assert kinds(pl)[:3] == ["packages", "mkdir", "install"]
    assert pl.changes[0] == "install python3-prometheus-client (apt-get)"
    assert pl.changes[2] == "install /usr/local/sbin/hostnet-ports-watcher (%d bytes)" % len(EXE)
    assert pl.changes[-1] == "start hostnet-ports-watcher.service (it is inactive)"


def test_installed_packages_cost_no_step():
    sp = pw.spec(params(packages=["python3"]))
    assert pw.plan(sp, installed(sp, missing_packages=[])).steps == []


def test_missing_packages_asks_dpkg_query(tmp_path, monkeypatch):
    """dpkg-query's answer for installed, removed and unknown packages (a fake dpkg-query on PATH)."""
    fake = tmp_path / "dpkg-query"
    fake.write_text("#!/bin/sh\nprintf 'python3 ii \\npython3-yaml rc \\n'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert pw.missing_packages(["python3", "python3-yaml", "nosuch"]) == ["python3-yaml", "nosuch"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ValidationError) as err:
        pw.missing_packages(["python3"])
    assert err.value.field == "packages"


@pytest.mark.parametrize("over, field", [
    ({"executable_content": "not base64!"}, "executable_content"),
    ({"executable_content": ""}, "executable_content"),
    ({"packages": ["python3", "Bad Name"]}, "packages[1]"),
    ({"packages": ["-o=APT::x"]}, "packages[0]"),
    ({"service": "-x"}, "service"),
    ({"service": "hostnet-ports-watcher.service"}, "service"),
    ({"config_file": "etc/watcher.json"}, "config_file"),
    ({"config": None}, "config"),
    ({"unit": ""}, "unit"),
    ({"policy": TASKS + ["web"]}, "policy[1]"),
    ({"config": {"mode": "audit"}}, "config.policy_dir"),
    ({"config": dict(CONFIG, policy_dir="relative")}, "config.policy_dir"),
    ({"config": dict(CONFIG, policy_dir="/etc/hostnet"), "config_file": "/etc/hostnet/ansible.json"}, "config_file"),
    ({"state": "restarted"}, "state"),
])
def test_bad_input_names_the_option(over, field):
    with pytest.raises(ValidationError) as err:
        pw.spec(params(**over))
    assert err.value.field == field


def test_the_files_are_written_as_the_earlier_role_wrote_them():
    """Ansible's to_nice_json(indent=2) and a newline: an upgrade from the role's copy/template tasks
    finds its files unchanged and does not restart the watcher."""
    core = pytest.importorskip("ansible.plugins.filter.core")
    value = dict(CONFIG, watch_interval=0.3, tasks=[{"name": "wéb", "ports": 31000}])
    assert pw.dump_json(value) == core.to_nice_json(value, indent=2) + "\n"


def test_write_atomic_renames_a_dot_file_from_beside_the_destination(tmp_path, monkeypatch):
    renames = []
    rename = os.rename
    monkeypatch.setattr(os, "rename", lambda src, dst: (renames.append((src, dst)), rename(src, dst)))
    path = str(tmp_path / "ansible.json")
    pw.write_atomic(path, "[]\n")
    src, dst = renames[0]
    assert dst == path and os.path.dirname(src) == str(tmp_path) and os.path.basename(src).startswith(".")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644 and os.listdir(str(tmp_path)) == ["ansible.json"]


# -- the executable's check: the real watcher's --check, run as a script ---------------------------

@pytest.fixture
def host(tmp_path):
    """Paths of a watcher install under tmp_path, and an 'executable' that is the watcher's main."""
    exe = tmp_path / "watcher.py"
    exe.write_text("import sys\nsys.path.insert(0, %r)\nfrom module_utils import watcher\nsys.exit(watcher.main())\n"
                   % os.path.abspath(PLUGINS))
    policy_dir = tmp_path / "policy.d"
    policy_dir.mkdir()
    config = dict(CONFIG, policy_dir=str(policy_dir), event_log=str(tmp_path / "log" / "events.jsonl"),
                  cgroup_root=str(tmp_path))
    return {"exe": str(exe), "dir": policy_dir, "config": config, "config_file": str(tmp_path / "watcher.json")}


def checked_plan(host, **over):
    p = params(config=host["config"], config_file=host["config_file"], unit_dir=os.path.dirname(host["exe"]),
               executable=host["exe"], python=sys.executable)
    p.update(over)
    sp = pw.spec(p)
    old = []
    for name in sorted(os.listdir(str(host["dir"]))):
        if pw.OLD_POLICY_RE.match(name):
            old.append((str(host["dir"] / name), (host["dir"] / name).read_text()))
    state = pw.State(service={"LoadState": "not-found", "ActiveState": "inactive"}, old_policy=old)
    return sp, state, pw.plan(sp, state)


def test_a_policy_the_watcher_refuses_fails_naming_its_field_and_writes_nothing(host):
    sp, state, pl = checked_plan(host, policy=[{"name": "web", "cgroup": "hostnet-tasks/web", "ports": "31000-99999"}])
    with pytest.raises(ValidationError) as err:
        pw.apply(sp, state, pl)
    assert err.value.field == "policy[0].ports"
    assert err.value.reason.startswith("99999 is not a port (1-65535)")
    assert not os.path.exists(host["config_file"]) and os.listdir(str(host["dir"])) == []


def test_a_configuration_the_watcher_refuses_names_the_option(host):
    sp, state, pl = checked_plan(host, config=dict(host["config"], metrics_listen="0.0.0.0:9613"))
    with pytest.raises(ValidationError) as err:
        pw.check_with_executable(sp, state)
    assert err.value.field == "config.metrics_listen"


def test_the_check_reads_the_new_policy_beside_the_drop_ins_of_others(host):
    (host["dir"] / "ansible-web.json").write_text(json.dumps(TASKS[0]))  # old layout: removed, not read
    (host["dir"] / "orchestrator.json").write_text(json.dumps({"name": "batch", "cgroup": "b", "ports": "31500"}))
    sp, state, _pl = checked_plan(host)
    pw.check_with_executable(sp, state)  # web once: ansible-web.json is not read
    (host["dir"] / "other.json").write_text(json.dumps({"name": "web", "cgroup": "w", "ports": "31600"}))
    with pytest.raises(ValidationError) as err:
        pw.check_with_executable(sp, state)
    assert err.value.field == "config.policy_dir"
    assert "%s/other.json.name" % host["dir"] in err.value.reason and "also defined in" in err.value.reason
    assert "hostnet-ports-watcher-check" not in err.value.reason  # the real paths, not the scratch copy's


def test_the_new_executable_checks_and_is_installed_and_reported(host, monkeypatch):
    """executable_content: the new bytes check the configuration before anything is written, then are
    installed with mode 0755; the watcher's --report runs before and after."""
    data = open(host["exe"], "rb").read()
    target = os.path.join(os.path.dirname(host["exe"]), "sbin", "hostnet-ports-watcher")
    monkeypatch.setattr(pw, "service_properties", lambda name: dict(RUNNING))
    calls = []
    monkeypatch.setattr(pw, "_run_service", lambda *argv: calls.append(argv))
    p = params(config=host["config"], config_file=host["config_file"], unit_dir=os.path.dirname(host["exe"]),
               executable=target, python=sys.executable, executable_content=base64.b64encode(data).decode(),
               report=True)
    bad = dict(p, policy=[{"name": "web", "cgroup": "hostnet-tasks/web", "ports": "31000-99999"}])
    with pytest.raises(ValidationError) as err:
        pw.Run(bad)  # refused by the new executable before anything changed
    assert err.value.field == "policy[0].ports" and not os.path.exists(target)
    assert not os.path.exists(host["config_file"])
    result = pw.converge(p)
    assert open(target, "rb").read() == data and stat.S_IMODE(os.stat(target).st_mode) == 0o755
    assert result["executable_changed"] and result["checked"]
    assert result["report"]["before"] is None  # nothing was installed before
    assert result["report"]["after"]["violations"] == {} and result["report"]["after"]["mode"] == "audit"
    asked = []
    report = pw.watcher_report
    monkeypatch.setattr(pw, "watcher_report", lambda sp: asked.append(1) or report(sp))
    again = pw.converge(p)
    assert again["changes"] == [] and not again["executable_changed"]
    assert again["report"]["before"]["mode"] == "audit" and again["report"]["after"] == again["report"]["before"]
    assert len(asked) == 1  # a run that changed nothing asks once
    run = pw.Run(p)
    run.finish(others_changed=True)  # the caller changed the host in between: asked again
    assert len(asked) == 3
