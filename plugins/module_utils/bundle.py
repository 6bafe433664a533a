# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One self-contained executable (a zipapp) from an entry module of the core and its import closure.

The watcher (``watcher.py``) and the CNI plugin (``cni.py``) reach hosts as one file each, built by
this module on the controller (the roles) or the build host (the Makefile)::

    python3 plugins/module_utils/bundle.py --entry watcher --output .build/watcher/hostnet-ports-watcher
    python3 plugins/module_utils/bundle.py --entry cni --cache-dir ~/.cache/hostnet.isolation \\
        --name hostnet-cni-port-mapper          # prints {"path": ..., "changed": ..., "sha256": ...}

The archive holds ``hostnet_core/__init__.py``, the entry module and every core module it imports,
directly or through another (``from . import x``, ``from .x import y``, including imports inside
functions), found by reading the sources (ast), and a ``__main__.py`` that runs ``<entry>.main()``.
A core file the entry does not reach is not in it, so changing that file leaves the executable's
bytes - and the daemon running it - alone.

The bytes depend only on the sources, the interpreter line and, with bytecode, the Python that
compiled it: entries sorted, stored uncompressed (no dependence on the zlib build), dated 1980-01-01,
mode 0644. Bytecode is unchecked-hash ``.pyc`` beside each source (zipimport reads ``name.pyc``, not
``__pycache__``); a host whose Python has another bytecode version ignores it and compiles the source.

This file is run by path (``python3 bundle.py``) as well as imported: it imports nothing from the
collection and only the standard library.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import ast
import base64
import hashlib
import io
import json
import os
import py_compile
import shutil
import sys
import tempfile
import time
import zipfile

PACKAGE = "hostnet_core"
DEFAULT_INTERPRETER = "/usr/bin/python3"
DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip entry can say
FILE_MODE = 0o100644               # a regular file, rw-r--r--
CACHE_KEEP_SECONDS = 7 * 24 * 3600  # cached builds unused this long are removed by the next build


class BundleError(Exception):
    """The sources cannot be bundled (a missing or unparsable module, an import the bundle cannot serve)."""


def _read(source_dir, module):
    path = os.path.join(source_dir, module + ".py")
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError) as exc:
        raise BundleError("%s: cannot read the core module %r: %s" % (path, module, exc))


def core_imports(source, filename="<source>"):
    """The core modules one module's source imports, in the order written.

    ``from . import a, b`` names modules; ``from .a import b`` names module ``a``; an import of the
    collection by its absolute name (``ansible_collections...``) or of ``ansible`` is refused: the
    bundle has neither, and the core imports itself relatively.
    """
    try:
        tree = ast.parse(source, filename)
    except SyntaxError as exc:
        raise BundleError("%s: not valid Python (line %s): %s" % (filename, exc.lineno, exc.msg))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = (node.module or "").split(".")[0]
                if top in ("ansible", "ansible_collections"):
                    raise BundleError("%s line %d: imports %s; the bundle holds only the core, which imports "
                                      "itself relatively (from . import x)" % (filename, node.lineno, node.module))
                continue
            if node.level != 1:
                raise BundleError("%s line %d: a relative import beyond the core's package" % (filename, node.lineno))
            if node.module:
                found.append(node.module.split(".")[0])
            else:
                found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("ansible", "ansible_collections"):
                    raise BundleError("%s line %d: imports %s; the bundle holds only the core"
                                      % (filename, node.lineno, alias.name))
    return found


def closure(source_dir, entry):
    """The sorted names of ``entry`` and every core module it reaches through relative imports."""
    seen, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        filename = os.path.join(source_dir, module + ".py")
        todo.extend(core_imports(_read(source_dir, module), filename))
    return sorted(seen)


def _bytecode(source, name):
    """Unchecked-hash bytecode of ``source`` as this Python compiles it (co_filename: the name in the archive)."""
    work = tempfile.mkdtemp(prefix="hostnet-bundle-")
    try:
        src, pyc = os.path.join(work, "m.py"), os.path.join(work, "m.pyc")
        with open(src, "wb") as f:
            f.write(source)
        try:
            py_compile.compile(src, cfile=pyc, dfile=name, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except py_compile.PyCompileError as exc:
            raise BundleError("%s: does not compile: %s" % (name, exc.msg))
        with open(pyc, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _entry(name, data):
    info = zipfile.ZipInfo(name, date_time=DATE_TIME)
    info.external_attr = FILE_MODE << 16
    info.create_system = 3  # unix, whatever the building OS: the mode bits mean what they say
    info.compress_type = zipfile.ZIP_STORED
    return info, data


def build(source_dir, entry, interpreter=DEFAULT_INTERPRETER, bytecode=False):
    """The executable's bytes: ``#!interpreter`` and a zip of the entry's closure."""
    if not interpreter.startswith("/") or any(c.isspace() for c in interpreter):
        raise BundleError("interpreter: %r is not an absolute path without spaces (it is the #! line)" % interpreter)
    modules = closure(source_dir, entry)
    files = {PACKAGE + "/__init__.py": b"",
             "__main__.py": ("import sys\nfrom %s.%s import main\nsys.exit(main())\n" % (PACKAGE, entry)).encode()}
    for module in modules:
        files["%s/%s.py" % (PACKAGE, module)] = _read(source_dir, module)
    if bytecode:
        for name in sorted(files):
            files[name[:-3] + ".pyc"] = _bytecode(files[name], name)
    buf = io.BytesIO()
    buf.write(b"#!" + interpreter.encode() + b"\n")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        for name in sorted(files):
            info, data = _entry(name, files[name])
            archive.writestr(info, data)
    return buf.getvalue()


def write(data, output):
    """Write ``data`` to ``output`` (mode 0755) unless it already holds it; True when it changed.

    A temporary file beside it, then a rename: a reader sees the old file or the new, never a part.
    """
    try:
        with open(output, "rb") as f:
            if f.read() == data:
                os.chmod(output, 0o755)
                return False
    except (IOError, OSError):
        pass
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(output) + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.rename(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def cache_path(cache_dir, name, data):
    """Where the cache keeps these bytes: ``<cache_dir>/<name>/<sha256 prefix>/<name>``.

    Named by content, so builds of different sources (two checkouts, two interpreters) sharing a
    cache never overwrite each other's file while a run copies it.
    """
    return os.path.join(cache_dir, name, hashlib.sha256(data).hexdigest()[:20], name)


def prune(cache_dir, name, keep, now=None):
    """Remove the cached builds of ``name`` other than ``keep`` not used for CACHE_KEEP_SECONDS."""
    now = time.time() if now is None else now
    top = os.path.join(cache_dir, name)
    try:
        entries = os.listdir(top)
    except OSError:
        return
    for entry in entries:
        path = os.path.join(top, entry)
        if os.path.join(path, name) == keep or os.path.islink(path) or not os.path.isdir(path):
            continue
        try:
            if now - os.stat(os.path.join(path, name)).st_mtime < CACHE_KEEP_SECONDS:
                continue
        except OSError:
            pass
        shutil.rmtree(path, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="bundle.py", description="Build one self-contained executable from a core module and its imports.")
    parser.add_argument("--entry", required=True, help="the core module whose main() the executable runs (watcher, cni)")
    parser.add_argument("--source", default=os.path.dirname(os.path.abspath(__file__)),
                        help="the core's directory (default: this file's)")
    parser.add_argument("--python", default=DEFAULT_INTERPRETER, help="the interpreter line (default %(default)s)")
    parser.add_argument("--bytecode", action="store_true",
                        help="add bytecode compiled by this Python (used on hosts with the same bytecode version)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--output", help="the file to write")
    where.add_argument("--cache-dir", help="a cache directory: the file goes to <dir>/<name>/<hash>/<name>")
    parser.add_argument("--name", help="with --cache-dir: the executable's name (default: the entry's)")
    parser.add_argument("--list", action="store_true", help="print the modules of the closure and exit")
    parser.add_argument("--base64", action="store_true",
                        help="add the executable's bytes, base64-encoded, to the JSON printed (as content)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            sys.stdout.write("\n".join(closure(args.source, args.entry)) + "\n")
            return 0
        if not (args.output or args.cache_dir):
            parser.error("one of --output, --cache-dir or --list is required")
        data = build(args.source, args.entry, args.python, args.bytecode)
        if args.output:
            output = args.output
        else:
            output = cache_path(os.path.expanduser(args.cache_dir), args.name or args.entry, data)
        changed = write(data, output)
        if args.cache_dir:
            os.utime(output, None)  # in use: not pruned for another CACHE_KEEP_SECONDS
            prune(os.path.expanduser(args.cache_dir), args.name or args.entry, output)
    except (BundleError, IOError, OSError) as exc:
        sys.stderr.write("bundle.py: %s\n" % exc)
        return 1
    result = {"path": output, "changed": changed, "sha256": hashlib.sha256(data).hexdigest(),
              "python": args.python, "modules": closure(args.source, args.entry)}
    if args.base64:
        result["content"] = base64.b64encode(data).decode("ascii")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
