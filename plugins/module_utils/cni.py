# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""hostnet-cni-port-mapper: a CNI plugin over the port-mapper core.

A drop-in for mesos-cni-port-mapper: it calls a ``delegate`` plugin (found on CNI_PATH) for the
interface and address, then maps the container's ports with the same backends, transactions and
conflict rules as the ``port_mapper`` module. Port mappings come from Mesos' network info
(``args.org.apache.mesos.network_info.port_mappings``) or the standard ``portMappings`` capability
(``runtimeConfig.portMappings``); without a delegate it chains after another plugin (``prevResult``),
like CNI's ``portmap``. Every CNI version from 0.1.0 (a configuration without ``cniVersion``, as Mesos
writes it) to 1.1.0; DEL, GC and STATUS work from the network configuration alone (mappings carry their
container id). Errors are CNI error objects on stdout, in the configuration's version, never a traceback.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import os
import sys

from .errors import ApplyError, HostnetError, ValidationError
from .port_mapper import add_container_fast, choose_backend, converge_port_mapper
from .portmap import PortMapperSpec, compact
from .validate import NAME_RE, ifname, ip_address

SUPPORTED_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
# A configuration without cniVersion is 0.1.0, as libcni and the plugins' skel read it (Mesos sends none).
DEFAULT_VERSION = "0.1.0"
# CNI error codes (spec 1.1): 1-99 are the spec's, 100+ this plugin's
E_INCOMPATIBLE_VERSION, E_UNSUPPORTED_FIELD, E_UNKNOWN_CONTAINER, E_INVALID_ENV = 1, 2, 3, 4
E_IO, E_DECODE, E_INVALID_CONFIG, E_NOT_AVAILABLE = 5, 6, 7, 50
E_PORT_CONFLICT, E_APPLY, E_CHECK_MISMATCH, E_DELEGATE = 100, 101, 102, 103


class CniError(Exception):
    def __init__(self, code, msg, details=""):
        super(CniError, self).__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def _version_key(version):
    return tuple(int(p) for p in version.split("."))


def parse_config(text):
    """The network configuration as a dict; ``cniVersion`` may be absent (0.1.0)."""
    try:
        conf = json.loads(text)
    except ValueError as exc:
        raise CniError(E_DECODE, "network configuration is not JSON: %s" % exc) from None
    if not isinstance(conf, dict):
        raise CniError(E_DECODE, "network configuration must be a JSON object")
    version = conf.get("cniVersion", DEFAULT_VERSION)
    if version not in SUPPORTED_VERSIONS:
        raise CniError(E_INCOMPATIBLE_VERSION, "cniVersion %r is not supported" % (version,),
                       "supported: %s" % ", ".join(SUPPORTED_VERSIONS))
    for key in ("name", "type"):
        if not isinstance(conf.get(key), str) or not conf[key]:
            raise CniError(E_INVALID_CONFIG, "network configuration: %s is required" % key)
    delegate = conf.get("delegate")
    if delegate is not None and (not isinstance(delegate, dict) or not isinstance(delegate.get("type"), str)):
        raise CniError(E_INVALID_CONFIG, "network configuration: delegate must be an object with a type")
    if delegate is not None and not NAME_RE.match(delegate["type"]):
        # a plugin is a file name looked up on CNI_PATH, never a path (libcni refuses the same: CVE-2021-20206)
        raise CniError(E_INVALID_CONFIG, "network configuration: delegate.type %r is not a plugin name (letters, "
                                         "digits and _.-, no '/')" % (delegate["type"],))
    if delegate is not None and delegate.get("cniVersion", version) not in SUPPORTED_VERSIONS:
        raise CniError(E_INCOMPATIBLE_VERSION, "delegate.cniVersion %r is not supported" % (delegate["cniVersion"],),
                       "supported: %s" % ", ".join(SUPPORTED_VERSIONS))
    for key in ("args", "runtimeConfig", "prevResult"):
        if conf.get(key) is not None and not isinstance(conf[key], dict):
            raise CniError(E_INVALID_CONFIG, "network configuration: %s must be an object" % key)
    return conf


def config_version(conf):
    return conf.get("cniVersion", DEFAULT_VERSION)


def requested_ports(conf):
    """[(host_port, container_port, protocol, host_ip)] from Mesos args and the portMappings capability."""
    out = []
    mesos = (((conf.get("args") or {}).get("org.apache.mesos") or {}).get("network_info") or {})
    for i, item in enumerate(mesos.get("port_mappings") or []):
        field = "args.org.apache.mesos.network_info.port_mappings[%d]" % i
        if not isinstance(item, dict):
            raise CniError(E_INVALID_CONFIG, "%s must be an object" % field)
        out.append((field, _port(field, item, "host_port"), _port(field, item, "container_port"),
                    item.get("protocol") or "tcp", None))
    for i, item in enumerate(((conf.get("runtimeConfig") or {}).get("portMappings")) or []):
        field = "runtimeConfig.portMappings[%d]" % i
        if not isinstance(item, dict):
            raise CniError(E_INVALID_CONFIG, "%s must be an object" % field)
        host_ip = item.get("hostIP") or None
        if host_ip is not None:
            try:
                host_ip = str(ip_address(field + ".hostIP", host_ip))
            except ValidationError as exc:
                raise CniError(E_INVALID_CONFIG, str(exc)) from None
        out.append((field, _port(field, item, "hostPort"), _port(field, item, "containerPort"),
                    item.get("protocol") or "tcp", host_ip))
    return out


def _port(field, item, key):
    """A port number: both formats define ports as integers (a range string is refused, not expanded)."""
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CniError(E_INVALID_CONFIG, "%s.%s: %r is not a port number (an integer 1-65535)" % (field, key, value))
    return value


def container_ips(result):
    """The container's first IPv4 and first IPv6 address from a CNI result of any version.

    0.3.0 and later list ``ips``; 0.1.0 and 0.2.0 give ``ip4`` and ``ip6`` objects (what Mesos reads).
    """
    result = result if isinstance(result, dict) else {}
    entries = [e for e in result.get("ips") or [] if isinstance(e, dict)]
    entries += [dict(address=result[k].get("ip", "")) for k in ("ip4", "ip6") if isinstance(result.get(k), dict)]
    found = {}
    for entry in entries:
        try:
            ip = ipaddress.ip_interface(entry.get("address", "")).ip
        except (TypeError, ValueError):
            continue
        found.setdefault(ip.version, str(ip))
    return found


def mappings_for(conf, container_id, ips):
    """[(config field, port_mapper mapping)]: each requested port for each family the container has."""
    mappings = []
    for field, host_port, container_port, protocol, host_ip in requested_ports(conf):
        families = [ipaddress.ip_address(host_ip).version] if host_ip else sorted(ips)
        if host_ip and families[0] not in ips:
            raise CniError(E_INVALID_CONFIG, "%s.hostIP: %s is IPv%d but the container has no IPv%d address"
                           % (field, host_ip, families[0], families[0]))
        for family in families:
            if family in ips:
                item = {"container_id": container_id, "container_ip": ips[family], "host_port": host_port,
                        "container_port": container_port, "protocol": str(protocol).lower()}
                if host_ip:
                    item["host_ip"] = host_ip
                mappings.append((field, item))
    return mappings


def _spec(conf, mappings=(), **kwargs):
    """The port_mapper spec; errors name the CNI configuration field the user wrote.

    Adding (and checking) takes portmap's keys (``portmap_options``); removing never refuses them, so
    that a DEL after a refused ADD still succeeds, and it needs no sysctl, so it looks no route up.
    """
    if kwargs.get("state") == "absent":
        kwargs["localhost_devices"] = []
    else:
        kwargs.update(portmap_options(conf))
    try:
        return PortMapperSpec(network=conf["name"], chain=conf.get("chain"),
                              exclude_devices=conf.get("excludeDevices") or [],
                              mappings=[item for _field, item in mappings], **kwargs)
    except ValidationError as exc:
        field = exc.field
        if field.startswith("mappings["):
            index = int(field[len("mappings["):field.index("]")])
            field, rest = mappings[index][0], field[field.index("]") + 1:]
            if field.startswith("runtimeConfig."):  # the capability's own key names
                for ours, theirs in (("host_port", "hostPort"), ("container_port", "containerPort"),
                                     ("host_ip", "hostIP")):
                    rest = rest.replace("." + ours, "." + theirs)
            field += rest
        raise CniError(E_INVALID_CONFIG, "%s: %s" % (_cni_field(field) or field, exc.reason)) from None


PORTMAP_KEYS = ("snat", "masqAll", "markMasqBit", "externalSetMarkChain", "conditionsV4", "conditionsV6")


def portmap_options(conf):
    """Spec options from CNI portmap's configuration keys, which apply when chained (``prevResult``).

    ``snat`` (default true) masquerades what needs it as portmap does: clients on the host at 127.0.0.1
    (``route_localnet`` set on the result's host-side interfaces) and DNATed traffic from the container's
    subnet (another container on the same bridge); ``masqAll`` masquerades all DNATed traffic. portmap's
    marks are how it masquerades; these rules need none, so ``markMasqBit`` and ``externalSetMarkChain`` are
    checked as portmap checks them and have no other effect. ``conditionsV4``/``V6`` are raw iptables
    arguments: only an empty list is taken.
    """
    given = [key for key in PORTMAP_KEYS if conf.get(key) is not None]
    if conf.get("delegate") is not None:
        if given:
            raise CniError(E_INVALID_CONFIG, "%s: a portmap key, taken when this plugin is chained (prevResult); "
                                             "with a delegate it maps ports as mesos-cni-port-mapper" % given[0])
        return {}
    snat, masq_all = _portmap_bool(conf, "snat", True), _portmap_bool(conf, "masqAll", False)
    bit = conf.get("markMasqBit")
    if bit is not None and (isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 31):
        raise CniError(E_INVALID_CONFIG, "markMasqBit: %r is not a mark bit (an integer 0-31)" % (bit,))
    chain = conf.get("externalSetMarkChain")
    if chain is not None:
        if bit is not None:
            raise CniError(E_INVALID_CONFIG, "externalSetMarkChain: cannot be set with markMasqBit (as in portmap)")
        if not isinstance(chain, str) or not NAME_RE.match(chain) or len(chain) > 28:
            raise CniError(E_INVALID_CONFIG, "externalSetMarkChain: %r is not an iptables chain name (letters, "
                                             "digits and _.-, up to 28)" % (chain,))
    for key in ("conditionsV4", "conditionsV6"):
        value = conf.get(key)
        if value is not None and not isinstance(value, list):
            raise CniError(E_INVALID_CONFIG, "%s: must be a list" % key)
        if value:
            raise CniError(E_INVALID_CONFIG, "%s: raw iptables match arguments are refused: this plugin writes "
                                             "nftables or iptables rules from checked fields only (excludeDevices "
                                             "keeps a device's traffic out; an empty list is taken)" % key)
    prev = conf.get("prevResult") if isinstance(conf.get("prevResult"), dict) else {}
    if not snat:
        return {"hairpin": False, "localhost": False}
    prefix = {4: 32, 6: 128}
    if masq_all:
        prefix = {4: 0, 6: 0}
    else:
        seen = set()
        for entry in prev.get("ips") or []:
            try:
                address = ipaddress.ip_interface(entry.get("address", "")) if isinstance(entry, dict) else None
            except ValueError:
                continue
            if address is not None and address.version not in seen:
                seen.add(address.version)
                prefix[address.version] = address.network.prefixlen
    devices = []
    for i, iface in enumerate(prev.get("interfaces") or []):
        if isinstance(iface, dict) and not iface.get("sandbox") and iface.get("name") is not None:
            try:
                devices.append(ifname("prevResult.interfaces[%d].name" % i, iface["name"]))
            except ValidationError as exc:
                raise CniError(E_INVALID_CONFIG, str(exc)) from None
    return {"hairpin": True, "localhost": True, "localhost_devices": devices, "hairpin_prefix": (prefix[4], prefix[6])}


def _portmap_bool(conf, key, default):
    value = conf.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise CniError(E_INVALID_CONFIG, "%s: %r is not a boolean (true or false)" % (key, value))
    return value


def call_delegate(conf, command, env, prev_result=None):
    """Run the delegate plugin as mesos-cni-port-mapper does: its own configuration plus the network's
    ``name`` and ``args`` (Mesos' labels and port mappings, which Calico-style delegates read); the
    environment (CNI_ARGS included) passes through. Its ``cniVersion`` is its own, else the network's, else
    none (0.1.0): its result comes back in that version and shape (``ip4``/``ip6`` up to 0.2.0)."""
    delegate = dict(conf["delegate"], name=conf["name"])
    if conf.get("args") is not None:
        delegate["args"] = conf["args"]
    if "cniVersion" not in delegate and "cniVersion" in conf:
        delegate["cniVersion"] = conf["cniVersion"]
    if prev_result is not None:
        delegate["prevResult"] = prev_result
    path = None
    for directory in (env.get("CNI_PATH") or "").split(":"):
        candidate = os.path.join(directory, delegate["type"])  # a plain name (parse_config): stays in directory
        if directory and os.access(candidate, os.X_OK):
            path = candidate
            break
    if path is None:
        raise CniError(E_INVALID_CONFIG, "delegate plugin %r not found on CNI_PATH (%s)"
                       % (delegate["type"], env.get("CNI_PATH") or "unset"))
    import subprocess  # only with a delegate: chained ADDs skip the import
    # The CNI plugin runs outside Ansible (a runtime execs it): there is no AnsibleModule.run_command.
    # pylint: disable-next=ansible-bad-function
    proc = subprocess.run([path], input=json.dumps(delegate), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(env, CNI_COMMAND=command), universal_newlines=True, check=False)
    if proc.returncode != 0:
        try:
            err = json.loads(proc.stdout)
        except ValueError:
            err = None
        if isinstance(err, dict):
            msg = "delegate %s %s: %s" % (delegate["type"], command, err.get("msg", ""))
            code = err.get("code")
            code = code if isinstance(code, int) and not isinstance(code, bool) else E_DELEGATE
            raise CniError(code, msg, str(err.get("details", "")))
        raise CniError(E_DELEGATE, "delegate %s %s failed (exit %d)" % (delegate["type"], command, proc.returncode),
                       (proc.stderr or proc.stdout).strip()[:1000])
    if not proc.stdout.strip():
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise CniError(E_DELEGATE, "delegate %s %s printed a result that is not JSON" % (delegate["type"], command),
                       proc.stdout.strip()[:1000]) from None


def _add_fast(spec):
    try:
        return add_container_fast(spec)
    except (ApplyError, OSError):
        return False  # the usual converge runs next, and reports what is wrong


# The core names its inputs as the port_mapper module does; a CNI user wrote these keys instead.
_CNI_FIELDS = (("network", "name"), ("exclude_devices", "excludeDevices"), ("chain", "chain"))


def _cni_field(field):
    """The configuration key of a core field the user set through a key of the configuration, else None."""
    for ours, theirs in _CNI_FIELDS:
        if field == ours or field.startswith(ours + "["):
            return theirs + field[len(ours):]
    return None


def _cni_words(exc):
    """A core error in the words of a network configuration: its keys, never an Ansible option."""
    reason = exc.reason.replace("(remove it first, or use exclusive: true)",
                                "(a runtime must DEL that container first)")
    reason = reason.replace("choose another chain", "choose another chain in the network configuration")
    field = _cni_field(exc.field)
    return "%s: %s" % (field, reason) if field else reason


def _converge(spec, diff=True):
    try:
        return converge_port_mapper(spec, diff=diff)
    except ValidationError as exc:
        # a taken port is a conflict; a chain of another owner is the configuration; an unsafe run directory the host
        code = {"mappings": E_PORT_CONFLICT, "run_dir": E_IO}.get(exc.field.split("[")[0], E_INVALID_CONFIG)
        raise CniError(code, "port mapping refused: %s" % _cni_words(exc)) from None
    except (ApplyError, OSError) as exc:
        reason = exc.reason if isinstance(exc, ApplyError) else str(exc)
        raise CniError(E_APPLY, "port mapping failed: %s" % reason) from None


def cmd_add(conf, env):
    container_id = env["CNI_CONTAINERID"]
    if not conf.get("delegate") and conf.get("prevResult") is None:
        raise CniError(E_INVALID_CONFIG, "ADD needs the container's address: chain this plugin after one that "
                                         "creates the interface (prevResult), or give a delegate plugin")
    # Validate everything before the delegate creates anything (the addresses are stand-ins).
    _spec(conf, mappings_for(conf, container_id, {4: "198.51.100.1", 6: "2001:db8::1"}))
    try:
        result = call_delegate(conf, "ADD", env) if conf.get("delegate") else conf["prevResult"]
        if not isinstance(result, dict) or not isinstance(result.get("ips", []), list):
            raise CniError(E_DELEGATE if conf.get("delegate") else E_INVALID_CONFIG,
                           "the %s is not a CNI result object"
                           % ("delegate's ADD result" if conf.get("delegate") else "prevResult"))
        mappings = mappings_for(conf, container_id, container_ips(result))
        if mappings:
            spec = _spec(conf, mappings)
            if not _add_fast(spec):
                _converge(spec)
    except CniError:
        if conf.get("delegate"):  # leave nothing behind: undo whatever the delegate's ADD made (DEL is idempotent)
            try:
                call_delegate(conf, "DEL", env)
            except CniError:
                pass
        raise
    return result  # the delegate's result as it gave it, or prevResult passed on


def cmd_del(conf, env):
    """Remove the container's mappings, found by its id alone: no prevResult, CNI_NETNS or address needed.

    Nothing to remove is success, so a repeated DEL or one after a failed ADD succeeds. The delegate's DEL
    runs after ours, as in mesos-cni-port-mapper: were its address freed first, a new container given that
    address could receive the old container's traffic.
    """
    # no before/after text of the whole network: nobody reads it, and it costs ~25 ms per 1,000 mappings
    _converge(_spec(conf, state="absent", container_id=env["CNI_CONTAINERID"]), diff=False)
    if conf.get("delegate"):
        call_delegate(conf, "DEL", env)
    return None


def cmd_check(conf, env):
    container_id = env["CNI_CONTAINERID"]
    prev = conf.get("prevResult")
    if prev is None:
        raise CniError(E_INVALID_CONFIG, "CHECK needs prevResult (the result of the container's ADD)")
    expected = _spec(conf, mappings_for(conf, container_id, container_ips(prev))).entries
    backend = choose_backend(_spec(conf, state="absent", container_id=container_id))
    actual = {}
    for _key, (network, state) in backend.read().items():
        if network == conf["name"]:
            actual = state.entries
    missing = compact(dict((k, v) for k, v in expected.items() if actual.get(k) != v))
    if missing:
        raise CniError(E_CHECK_MISMATCH, "port mappings of container %s are missing or changed" % container_id,
                       json.dumps(missing))
    if conf.get("delegate"):
        call_delegate(conf, "CHECK", env, prev_result=prev)
    return None


def cmd_gc(conf, env):
    """Remove the mappings of every container of this network that ``cni.dev/valid-attachments`` omits."""
    attachments = conf.get("cni.dev/valid-attachments") or []
    if not isinstance(attachments, list) or not all(isinstance(a, dict) for a in attachments):
        raise CniError(E_INVALID_CONFIG, "cni.dev/valid-attachments must be a list of objects")
    valid = set(a.get("containerID") for a in attachments)
    backend = choose_backend(_spec(conf, state="absent"))
    for _key, (network, state) in backend.read().items():
        if network == conf["name"]:
            for cid in sorted(set(v[0] for v in state.entries.values()) - valid):
                _converge(_spec(conf, state="absent", container_id=cid))
    if conf.get("delegate"):
        call_delegate(conf, "GC", env)
    return None


def cmd_status(conf, env):
    del env
    try:
        choose_backend(_spec(conf, state="absent"))
    except (ApplyError, OSError) as exc:
        raise CniError(E_NOT_AVAILABLE, "no usable backend: %s" % exc) from None
    return None


COMMANDS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc, "STATUS": cmd_status}
# The first version of the spec with each command; an older configuration gets error 1, as the skel answers.
SINCE = {"CHECK": (0, 4, 0), "GC": (1, 1, 0), "STATUS": (1, 1, 0)}


def _error_version(stdin_text):
    """The cniVersion of an error object: the configuration's, as far as it can be read."""
    try:
        conf = json.loads(stdin_text)
    except ValueError:
        return SUPPORTED_VERSIONS[-1]
    version = conf.get("cniVersion", DEFAULT_VERSION) if isinstance(conf, dict) else DEFAULT_VERSION
    return version if isinstance(version, str) and len(version) <= 32 else DEFAULT_VERSION


def run(env, stdin_text):
    """(exit code, stdout text) for one invocation."""
    command = env.get("CNI_COMMAND")
    version = SUPPORTED_VERSIONS[-1]
    try:
        if command == "VERSION":
            try:
                asked = json.loads(stdin_text or "{}").get("cniVersion")
            except (AttributeError, ValueError):
                asked = None
            version = asked if isinstance(asked, str) and len(asked) <= 32 else version
            return 0, json.dumps({"cniVersion": version, "supportedVersions": SUPPORTED_VERSIONS})
        version = _error_version(stdin_text)
        if command not in COMMANDS:
            raise CniError(E_INVALID_ENV, "CNI_COMMAND %r is not one of ADD, DEL, CHECK, GC, STATUS, VERSION"
                           % (command,))
        conf = parse_config(stdin_text)
        if command in SINCE and _version_key(config_version(conf)) < SINCE[command]:
            raise CniError(E_INCOMPATIBLE_VERSION, "%s needs cniVersion %s or later (the configuration has %s)"
                           % (command, ".".join(str(n) for n in SINCE[command]), config_version(conf)))
        if command in ("ADD", "DEL", "CHECK") and not env.get("CNI_CONTAINERID"):
            raise CniError(E_INVALID_ENV, "CNI_CONTAINERID is required for %s" % command)
        result = COMMANDS[command](conf, env)
        return 0, json.dumps(result) if result is not None else ""
    except CniError as exc:
        return 1, json.dumps({"cniVersion": version, "code": exc.code, "msg": exc.msg, "details": exc.details})
    except HostnetError as exc:
        return 1, json.dumps({"cniVersion": version, "code": E_INVALID_CONFIG, "msg": _cni_words(exc),
                              "details": ""})
    except Exception as exc:  # pylint: disable=broad-except
        # a plugin must answer with a CNI error object, never a traceback
        return 1, json.dumps({"cniVersion": version, "code": E_IO, "msg": "%s: %s" % (type(exc).__name__, exc),
                              "details": ""})


def main():
    """The executable's entry point; returns the exit status."""
    code, out = run(dict(os.environ), sys.stdin.read())
    if out:
        sys.stdout.write(out + "\n")
    return code
