# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""iptables backend: a DNAT chain per network, applied with ``iptables-restore --noflush``.

Like kube-proxy, the network's own chains are rendered whole and written in one restore per
address family (declaring a chain in --noflush mode empties it first); the built-in chains
only get (or lose) the one jump rule per hook and network, tagged with a comment. Rules of
other owners are never touched. The variant (``nft`` or ``legacy``) follows what the host
uses, so legacy and nft rules are never mixed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex
import shutil
import subprocess

from .errors import ApplyError, ValidationError
from .portmap import MARKER_OPTIONS_RE, NetworkState, marker_options, parse_marker_options


def parse_iptables_version(text):
    """(version, backend) from `iptables -V` output; backend is "nft" or "legacy"."""
    match = re.search(r"v(\d+\.\d+(?:\.\d+)?)(?:\s+\((\w+)\))?", text)
    if not match:
        return None, None
    # iptables before 1.6 prints no backend: those are all legacy
    backend = {"nf_tables": "nft", "legacy": "legacy"}.get(match.group(2) or "legacy", match.group(2))
    return match.group(1), backend


_JUMP_RE = re.compile(r"^hostnet port_mapper (\S+) %s$" % MARKER_OPTIONS_RE)
_HOOKS = (("PREROUTING", "-m addrtype --dst-type LOCAL ", ""), ("OUTPUT", "-m addrtype --dst-type LOCAL ", ""),
          ("POSTROUTING", "", "-POST"))
RESTORE_ARGS = ["--noflush", "--wait=10"]


def iptables_variant(legacy_loaded):
    """"legacy" or "nft": legacy when legacy tables are loaded, else what `iptables -V` reports."""
    if legacy_loaded:
        return "legacy"
    path = shutil.which("iptables")
    if not path:
        return "nft"
    # Shared with the CNI plugin, which runs outside Ansible: no AnsibleModule.run_command there.
    # pylint: disable-next=ansible-bad-function
    out = subprocess.run([path, "-V"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         check=False).stdout
    return parse_iptables_version(out)[1] or "nft"


def _legacy_nat_loaded(family):
    try:
        with open("/proc/net/ip%s_tables_names" % ("" if family == 4 else "6")) as f:
            return "nat" in f.read().split()
    except OSError:
        return False


def jump_comment(network, state):
    return "hostnet port_mapper %s %s" % (network, marker_options(state))


def _jump_lines(network, chain, state):
    """The rules in the built-in chains that send traffic to the network's chains."""
    if not state.exists:
        return []
    comment = jump_comment(network, state)
    return ['-A %s %s-m comment --comment "%s" -j %s%s' % (hook, match, comment, chain, suffix)
            for hook, match, suffix in _HOOKS]


class IptablesBackend:
    def __init__(self, variant):
        if variant not in ("nft", "legacy"):
            raise ValueError(variant)
        self.variant = variant
        self.name = "iptables-%s" % variant
        self.engine = "iptables-%s-restore" % variant
        self.tools = {}
        for family, prefix in ((4, "iptables"), (6, "ip6tables")):
            for tool in ("save", "restore"):
                self.tools[(family, tool)] = shutil.which("%s-%s-%s" % (prefix, variant, tool))
        if not self.tools[(4, "restore")] or not self.tools[(4, "save")]:
            raise ApplyError("backend", "iptables backend: iptables-%s-restore / -save not found (install the "
                                        "iptables package)" % variant)
        self.jumps = {4: {}, 6: {}}
        self.chains = set()  # every chain of the nat tables, ours or not

    def _run(self, family, tool, args, stdin=None):
        path = self.tools[(family, tool)]
        if path is None:
            raise ApplyError("backend", "ip6tables-%s-%s is needed for IPv6 mappings" % (self.variant, tool))
        if stdin is not None:
            check_restore_text(stdin)
        # Shared with the CNI plugin, which runs outside Ansible: no AnsibleModule.run_command there.
        # pylint: disable-next=ansible-bad-function
        proc = subprocess.run([path] + args, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    # -- reading ---------------------------------------------------------------------------------

    def _save(self, family):
        if self.tools[(family, "save")] is None:
            return []
        if self.variant == "legacy" and not _legacy_nat_loaded(family):
            return []  # saving would load the table: a read must not change the host
        code, out, err = self._run(family, "save", ["-t", "nat"])
        if code != 0:
            tool = "iptables" if family == 4 else "ip6tables"
            raise ApplyError("backend", "%s-save failed: %s" % (tool, err.strip()))
        return out.splitlines()

    def read(self):
        """{chain: (network, NetworkState)} for every port_mapper network on the host."""
        found = {}
        self.jumps = {4: {}, 6: {}}
        self.chains = set()
        for family in (4, 6):
            lines = self._save(family)
            self.chains.update(line[1:].split(" ", 1)[0] for line in lines if line.startswith(":"))
            for line in lines:
                if not (line.startswith("-A ") and "hostnet port_mapper " in line):
                    continue
                words = _split(line)
                match = _JUMP_RE.match(_option(words, "--comment") or "")
                target = _option(words, "-j")
                if not match or not target:
                    continue
                chain = target[:-len("-POST")] if words[1] == "POSTROUTING" and target.endswith("-POST") else target
                self.jumps[family].setdefault(chain, []).append(line)
                network, state = found.get(chain, (match.group(1), NetworkState(exists=True)))
                state.hairpin, state.localhost, state.hairpin_prefix = parse_marker_options(match, 2)
                found[chain] = (network, state)
            for chain, (_network, state) in found.items():
                prefix = "-A %s " % chain
                for line in lines:
                    if line.startswith(prefix):
                        _parse_rule(family, _split(line), state)
        for _network, state in found.values():
            state.exclude_devices = sorted(set(state.exclude_devices))
        return found

    def check_owner(self, spec, networks):
        """Refuse to write a chain that exists and is not this network's: declaring it would flush it."""
        field = "chain" if spec.chain_given else "network"
        for name in (spec.chain, spec.chain + "-POST"):
            if name in _BUILTIN_CHAINS:
                raise ValidationError(field, "%s is a built-in iptables chain; choose another chain name" % name)
            base = name[:-len("-POST")] if name != spec.chain else name
            if name in self.chains and base not in networks:
                raise ValidationError(field, "the nat chain %s exists and is not a port_mapper chain (no jump tagged "
                                             "'hostnet port_mapper'); it is left alone: choose another chain" % name)
        if spec.chain in networks and networks[spec.chain][0] != spec.network:
            raise ValidationError(field, "the chain %s belongs to port_mapper network %s; choose another chain"
                                  % (spec.chain, networks[spec.chain][0]))

    # -- writing ---------------------------------------------------------------------------------

    def render(self, spec, state, family, stale=(), jumps=None):
        """iptables-restore input for one family: the network's chains whole, jumps as needed."""
        jumps = self.jumps[family] if jumps is None else jumps
        chain, post = spec.chain, spec.chain + "-POST"
        out = ["*nat"]
        if state.exists:
            out += [":%s - [0:0]" % chain, ":%s - [0:0]" % post]
            out += [format_rule(rule) for rule in chain_rules(spec, state, family)]
        wanted = _jump_lines(spec.network, chain, state)
        for name in [chain] + list(stale):
            for line in jumps.get(name, []):
                if line not in wanted:
                    out.append("-D" + line[2:])
        existing = jumps.get(chain, [])
        for line in wanted:
            if line not in existing:
                hook = line.split()[1]
                out.append("-I %s 1%s" % (hook, line[len("-A " + hook):]))
        for name in list(stale) + ([] if state.exists else [chain]):
            if jumps.get(name):
                out += [":%s - [0:0]" % name, ":%s-POST - [0:0]" % name, "-X %s" % name, "-X %s-POST" % name]
        out.append("COMMIT")
        return "\n".join(out) + "\n"

    def apply(self, spec, before, after, stale=()):
        """One restore per family; if the IPv6 one fails, the IPv4 one is put back as it was."""
        families = [4]
        if any(k[0] == 6 for k in list(before.entries) + list(after.entries)) or self.jumps[6]:
            families.append(6)
            if self.tools[(6, "restore")] is None:  # know before anything is changed
                raise ApplyError("mappings", "IPv6 mappings need ip6tables-%s-restore" % self.variant)
        done = []
        for family in families:
            code, _out, err = self._run(family, "restore", RESTORE_ARGS,
                                        stdin=self.render(spec, after, family, stale))
            if code != 0:
                undone = ""
                for fam in done:
                    # the jumps are now those of ``after``: render ``before`` against them
                    now = {spec.chain: _jump_lines(spec.network, spec.chain, after)}
                    back, _out, back_err = self._run(fam, "restore", RESTORE_ARGS,
                                                     stdin=self.render(spec, before, fam, jumps=now))
                    undone = ("; the IPv4 part was put back" if back == 0 else
                              "; putting the IPv4 part back FAILED too (%s)" % back_err.strip()[:500])
                raise ApplyError("mappings", "%s-restore rejected the ruleset%s: %s" % (
                    "iptables" if family == 4 else "ip6tables", undone or "; nothing was changed",
                    err.strip()[:2000]))
            done.append(family)


_BUILTIN_CHAINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


def check_restore_text(text):
    """The last guard before iptables-restore: one table, one COMMIT at the end, nothing that cuts a line.

    Every token was validated already (validate.py); this catches a rendering bug or a value that
    bypassed validation before it could add a table or commit of its own.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if ("\0" in text or "\r" in text or not lines or not lines[0].startswith("*") or lines[-1] != "COMMIT"
            or any(line.startswith("*") or line == "COMMIT" for line in lines[1:-1])):
        raise ApplyError("mappings", "refusing iptables-restore input that is not one table and one COMMIT "
                                     "(a value escaped validation); nothing was changed")


def _split(line):
    """iptables-save words; a line whose quotes do not pair (left by an older version) splits on blanks."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


def chain_rules(spec, state, family):
    """The rules of the network's own chains, as dicts (rendered as text or built with libiptc)."""
    chain, post = spec.chain, spec.chain + "-POST"
    rules = [{"chain": chain, "in": dev, "target": "RETURN"} for dev in state.exclude_devices]
    if family == 6:
        rules.append({"chain": chain, "dst": "::1/128", "target": "RETURN"})  # ::1 cannot be routed off the host
    elif not state.localhost:
        rules.append({"chain": chain, "dst": "127.0.0.0/8", "target": "RETURN"})
    ips = set()
    for (fam, proto, host_ip, port), (cid, cip, cport) in sorted(state.entries.items()):
        if fam != family:
            continue
        ips.add((cip, cid))
        rules.append({"chain": chain, "dst": host_ip or None, "proto": proto, "dport": port,
                      "comment": "container_id: %s" % cid, "target": "DNAT",
                      "to": ("[%s]:%d" if family == 6 else "%s:%d") % (cip, cport)})
    sources = state.hairpin_sources(family)
    for cip, cid in sorted(ips):
        if state.hairpin:  # DNATed traffic from the container's own network (itself, or its bridge's subnet)
            rules.append({"chain": post, "src": sources[cip], "dst": cip, "ctstate": "DNAT",
                          "comment": "container_id: %s" % cid, "target": "MASQUERADE"})
        if state.localhost and family == 4:
            rules.append({"chain": post, "src": "127.0.0.0/8", "dst": cip, "ctstate": "DNAT",
                          "comment": "container_id: %s" % cid, "target": "MASQUERADE"})
    return rules


def format_rule(rule):
    """A rule dict in iptables-save syntax (the order iptables-save prints)."""
    words = ["-A", rule["chain"]]
    for key, flag in (("in", "-i"), ("src", "-s"), ("dst", "-d")):
        if rule.get(key):
            words += [flag, rule[key]]
    if rule.get("proto"):
        words += ["-p", rule["proto"], "-m", rule["proto"], "--dport", str(rule["dport"])]
    if rule.get("ctstate"):
        words += ["-m", "conntrack", "--ctstate", rule["ctstate"]]
    if rule.get("comment"):
        words += ["-m", "comment", "--comment", '"%s"' % rule["comment"]]
    words += ["-j", rule["target"]]
    if rule.get("to"):
        words += ["--to-destination", rule["to"]]
    return " ".join(words)


def _option(words, name):
    for i, word in enumerate(words[:-1]):
        if word == name:
            return words[i + 1]
    return None


def _parse_rule(family, words, state):
    target = _option(words, "-j")
    if target == "RETURN" and _option(words, "-i"):
        state.exclude_devices.append(_option(words, "-i"))
        return
    dest = re.match(r"^\[?([^\]]+?)\]?:(\d+)$", _option(words, "--to-destination") or "")
    if target != "DNAT" or not dest:
        return
    comment = _option(words, "--comment") or ""
    host_ip = (_option(words, "-d") or "").rsplit("/", 1)[0]
    cid = comment[len("container_id: "):] if comment.startswith("container_id: ") else ""
    state.entries[(family, _option(words, "-p"), host_ip, int(_option(words, "--dport")))] = (
        cid, dest.group(1), int(dest.group(2)))
