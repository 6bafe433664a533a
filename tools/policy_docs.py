# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write the policy's documentation from the parts' schemas, or check that it is what they give.

The policy's option tree (types, defaults, choices, what is required) is built by the core,
``host_network.policy_options()``, from every part's ``OPTIONS``. This writes it, with the
descriptions, into the role's argument spec (``roles/host_network/meta/argument_specs.yml``, which
Ansible validates ``host_network_policy`` with) and into the host_network module's documentation
(which ansible-test checks against the module's argument spec). A description comes from the role's
spec when it has one, otherwise from the part module's documentation of the option.

    python3 tools/policy_docs.py          # write both
    python3 tools/policy_docs.py --check  # exit 1, naming the file, when either is not what the schemas give
"""

import ast
import os
import re
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "plugins"))

from module_utils import host_network  # noqa: E402  pylint: disable=wrong-import-position

ROLE_SPEC = os.path.join(REPO, "roles", "host_network", "meta", "argument_specs.yml")
MODULE = os.path.join(REPO, "plugins", "modules", "host_network.py")
BEGIN = "# BEGIN GENERATED policy suboptions (tools/policy_docs.py writes them from the parts' schemas)\n"
END = "# END GENERATED\n"
DOC_KEYS = ("type", "elements", "required", "default", "choices")


def module_doc(name):
    path = os.path.join(REPO, "plugins", "modules", name + ".py")
    with open(path) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)
    raise SystemExit("%s has no DOCUMENTATION" % path)


_OPTION_RE = re.compile(r"O\(([^)]*)\)")


def _markup(text, root):
    """Option references that resolve where the text lands: ``root.<path>`` for the policy's own
    options, code for a part module's option named out of its module's context."""
    def one(match):
        ref = match.group(1)
        if ref.startswith("host_network_policy."):
            return "O(%s.%s)" % (root, ref[len("host_network_policy."):])
        return "C(%s)" % ref
    return _OPTION_RE.sub(one, text)


def _description(path, described, fallback):
    text = (described or {}).get("description") or (fallback or {}).get("description")
    if not text:
        raise SystemExit("%s: no description in %s nor in the part module's documentation"
                         % (".".join(path), os.path.relpath(ROLE_SPEC, REPO)))
    return [_markup(t, path[0]) for t in ([text] if isinstance(text, str) else list(text))]


def tree(spec, described, fallback, path, sub_key):
    """The documentation tree for an argument spec's options."""
    out = {}
    for name, option in spec.items():
        mine = (described or {}).get(name) or {}
        theirs = (fallback or {}).get(name) or {}
        entry = {"description": _description(path + [name], mine, theirs)}
        for key in DOC_KEYS:
            if key in option and option[key] is not None and not (key == "required" and not option[key]):
                entry[key] = option[key]
        if "options" in option:
            section = path[-1] if path else None
            part_doc = theirs.get("suboptions") or theirs.get("options")
            if not part_doc and name in host_network.PART:
                part_doc = module_doc(host_network.PART[name][1])["options"]
            entry[sub_key] = tree(option["options"], mine.get("options"), part_doc, path + [name], sub_key)
            del section
        out[name] = entry
    return out


def role_spec():
    with open(ROLE_SPEC) as handle:
        return yaml.safe_load(handle)


def generated_role_spec(current):
    main = dict(current["argument_specs"]["main"])
    options = dict(main["options"])
    policy = dict(options["host_network_policy"])
    policy["options"] = tree(host_network.policy_options(), policy.get("options"), None, ["host_network_policy"],
                             "options")
    options["host_network_policy"] = policy
    main["options"] = options
    # `validate` takes the same variables (Ansible checks them against its spec too) but only checks
    # the policy: its own text from the spec, main's options.
    validate = dict(current["argument_specs"].get("validate") or {})
    for key in ("short_description", "description"):
        if not validate.get(key) or validate[key] == current["argument_specs"]["main"].get(key):
            raise SystemExit("%s: the validate entry point needs its own %s (what it does, not main's text)"
                             % (os.path.relpath(ROLE_SPEC, REPO), key))
    entry = {"short_description": validate["short_description"], "description": validate["description"]}
    entry.update((k, v) for k, v in main.items() if k not in entry)
    return {"argument_specs": {"main": main, "validate": entry}}


class _NoAliases(yaml.SafeDumper):  # pylint: disable=too-many-ancestors
    def ignore_aliases(self, data):
        return True

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)  # lists indented under their key, as yamllint wants


def dump(data):
    return yaml.dump(data, Dumper=_NoAliases, sort_keys=False, width=118, default_flow_style=False)


def role_text(current):
    return ("---\n# Generated by tools/policy_docs.py from the parts' schemas (types) and the descriptions here: edit the\n"
            "# descriptions, then run it. `validate` is what playbooks/site.yml runs in its preflight: its own text, the\n"
            "# same options.\n"
            + dump(generated_role_spec(current)))


def module_text(current_role):
    with open(MODULE) as handle:
        text = handle.read()
    start = text.index(BEGIN) + len(BEGIN)
    stop = text.index(END, start)
    policy_doc = generated_role_spec(current_role)["argument_specs"]["main"]["options"]["host_network_policy"]
    subs = tree(host_network.policy_options(), policy_doc["options"], None, ["policy"], "suboptions")
    block = dump({"suboptions": subs})
    block = "".join("    " + line if line.strip() else line for line in block.splitlines(True))
    return text[:start] + block + text[stop:]


WATCHER_BEGIN = "# BEGIN GENERATED watcher suboptions (tools/policy_docs.py writes them from the ports_watcher module)\n"
_REF_RE = re.compile(r"(O|RV)\(([^)]*)\)")


def _watcher_markup(text, names):
    """The ports_watcher module's references as they resolve in the host_network module's docs."""
    def one(match):
        kind, ref = match.groups()
        name = ref.split("=")[0].split(".")[0]
        if kind == "O" and name in names and name not in host_network.WATCHER_DROP:
            return "O(watcher.%s)" % ref
        return "C(%s)" % ref
    return _REF_RE.sub(one, text)


def watcher_suboptions():
    """The watcher option's suboptions: the ports_watcher module's options (its docs) but state and policy."""
    spec = host_network.argument_spec()["watcher"]["options"]
    theirs = module_doc("ports_watcher")["options"]
    out = {}
    for name, option in spec.items():
        text = theirs[name]["description"]
        entry = {"description": [_watcher_markup(t, spec) for t in ([text] if isinstance(text, str) else text)]}
        for key in DOC_KEYS:
            if key in option and option[key] is not None and not (key == "required" and not option[key]):
                entry[key] = option[key]
        out[name] = entry
    return out


def module_watcher_text(text):
    start = text.index(WATCHER_BEGIN) + len(WATCHER_BEGIN)
    stop = text.index(END, start)
    block = dump({"suboptions": watcher_suboptions()})
    block = "".join("    " + line if line.strip() else line for line in block.splitlines(True))
    return text[:start] + block + text[stop:]


def main(argv):
    check = "--check" in argv
    current = role_spec()
    outputs = ((ROLE_SPEC, role_text(current)), (MODULE, module_watcher_text(module_text(current))))
    stale = []
    for path, text in outputs:
        with open(path) as handle:
            if handle.read() == text:
                continue
        stale.append(os.path.relpath(path, REPO))
        if not check:
            with open(path, "w") as handle:
                handle.write(text)
    if check and stale:
        print("not what the parts' schemas give (run tools/policy_docs.py): %s" % ", ".join(stale))
        return 1
    if stale:
        print("wrote %s" % ", ".join(stale))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
