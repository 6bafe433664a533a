# Copyright: hostnet.isolation contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stand-in for ansible-test's get-pip bootstrap script, for machines that reach only PyPI.

ansible-test creates empty virtual environments and runs a cached get-pip script in them with
pip's install arguments (for example ``pip==24.2 --no-setuptools``). This does the same with the
pip wheel that Python itself bundles (ensurepip): that pip installs the requested pip from PyPI.
"""

import glob
import os
import sys

import ensurepip


def main():
    bundled = glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl"))
    if not bundled:
        sys.exit("ensurepip has no bundled pip wheel in this Python")
    sys.path.insert(0, bundled[0])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    sys.exit(pip_main(["install", "--no-cache-dir"] + args))


if __name__ == "__main__":
    main()
