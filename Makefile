# hostnet.isolation — every entry point a user or CI needs.
#   make demo   converge a local sandbox fleet with playbooks/site.yml and show the result
#   make test   every test and check CI runs
# Needs root (network namespaces) on Debian 12 or similar; installs its own dependencies.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
BUILD := $(CURDIR)/.build
COLLECTIONS := $(BUILD)/collections
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL := $(BUILD)/hostnet-isolation-$(VERSION).tar.gz
JOBS ?= 2
SANDBOX_HOSTS ?= 4

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_NOCOLOR := 1
export ANSIBLE_FORCE_COLOR := 0
export PATH := $(BIN):$(PATH)

.PHONY: help deps venv collection cni-plugin watcher demo sandbox-up sandbox-down test test-unit test-integration \
        test-examples test-molecule test-kernels molecule-setup sanity test-compat lint clean test-packaging \
        galaxy-importer docs-lint docs

help:
	@echo "make demo   - converge a local sandbox fleet (systemd containers) and show what it did"
	@echo "make test   - unit, integration, sanity and lint: everything CI runs"

# Debian packages, installed only when one is missing.
$(BUILD)/deps.stamp: apt-packages.txt
	@mkdir -p $(BUILD)
	@missing=$$(grep -v '^#' apt-packages.txt | xargs -n1 | while read -r p; do \
	    dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'install ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
	    echo "apt-get install" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@
deps: $(BUILD)/deps.stamp

# The repository's tooling (tests/requirements.txt), not the collection's dependencies (meta/, bindep.txt).
$(VENV)/stamp: tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r tests/requirements.txt
	@touch $@
venv: $(VENV)/stamp

# Build the collection tarball and install it: tests run the installed copy, as users do.
collection: venv
	@mkdir -p $(BUILD) $(COLLECTIONS)
	$(BIN)/ansible-galaxy collection build --force --output-path $(BUILD) . >/dev/null
	$(BIN)/ansible-galaxy collection install --force -p $(COLLECTIONS) $(TARBALL) >/dev/null
	@echo "installed hostnet.isolation $(VERSION) into $(COLLECTIONS)"

# The CNI plugin and the ports watcher as one self-contained executable each (a zipapp of the entry
# module and the core modules it imports, nothing else) for the OS Python, built by the builder the
# roles use on the controller. Bytecode from the OS Python: a runtime calls the plugin for every
# container, and compiling it each time would cost more than the work itself. The builder leaves an
# unchanged file alone; touch tells make it is up to date.
BUNDLE := /usr/bin/python3 plugins/module_utils/bundle.py --python /usr/bin/python3 --bytecode
CNI_PLUGIN := $(BUILD)/cni/hostnet-cni-port-mapper
$(CNI_PLUGIN): $(wildcard plugins/module_utils/*.py)
	$(BUNDLE) --entry cni --output $@ >/dev/null
	@touch $@
cni-plugin: $(CNI_PLUGIN)

WATCHER := $(BUILD)/watcher/hostnet-ports-watcher
$(WATCHER): $(wildcard plugins/module_utils/*.py)
	$(BUNDLE) --entry watcher --output $@ >/dev/null
	@touch $@
watcher: $(WATCHER)

# The sandbox fleet: systemd containers of the molecule image (built once, cached), reached with nsenter.
demo: deps venv collection molecule-setup
	image=$$($(MOLECULE_ENV) molecule/image/build-image.sh) && \
	  $(MOLECULE_ENV) $(BIN)/python -m tests.harness.sandbox demo --hosts $(SANDBOX_HOSTS) --image $$image

test: deps venv collection test-unit test-integration test-kernels test-molecule test-compat sanity lint \
      test-packaging galaxy-importer docs-lint docs
	@echo "make test: all checks passed"

test-unit: venv collection  # the policy-schema test runs the filter plugin as installed
	$(BIN)/python -m pytest -q tests/unit

# tests/kernel runs here on the build host's kernel too, and in test-kernels on Debian's
test-integration: deps venv collection cni-plugin watcher
	$(BIN)/python -m pytest -q -n $(JOBS) tests/integration tests/kernel

# The kernel tier: tests/kernel (plus KERNEL_TESTS_EXTRA) as one pytest process in a VM booted on each
# of Debian's kernels (linux-image-KERNEL, fetched and cached in /var/tmp/hostnet-kernels by
# tests/harness/kernel_vm.sh; qemu, TCG when there is no usable KVM). Every kernel runs; any failure fails.
# The VM's cgroup hierarchy is pure v2 (the build host's is hybrid): the watcher's tests also run on
# Debian's 6.1 (WATCHER_TIER_KERNEL), all but the ones that build their own cgroup layout or only parse.
KERNELS ?= amd64 6.12-amd64
KERNEL_TESTS_EXTRA ?=
KERNEL_PYTEST_ARGS ?= -q -p no:cacheprovider
WATCHER_TIER_KERNEL ?= amd64
WATCHER_TIER_TESTS ?= tests/integration/test_ports_watcher.py -k "not invalid_config and not without_cgroup2"
test-kernels: deps venv collection cni-plugin watcher
	@failed=; for k in $(KERNELS); do \
	  echo "== kernel tier: linux-image-$$k"; \
	  if [ "$$k" = "$(WATCHER_TIER_KERNEL)" ]; then set -- $(WATCHER_TIER_TESTS); else set --; fi; \
	  tests/harness/kernel_vm.sh --kernel "$$k" -- env PYTHONDONTWRITEBYTECODE=1 PATH="$$PATH" \
	    sh -c 'echo "kernel: $$(uname -r)"; exec "$$0" -m pytest "$$@"' $(BIN)/python \
	    $(KERNEL_PYTEST_ARGS) tests/kernel $(KERNEL_TESTS_EXTRA) "$$@" || failed="$$failed $$k"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test-kernels: failed on:$$failed"; exit 1; fi

# Molecule: podman (runc, no network) on a local systemd image built with debootstrap, cached by a
# hash of its recipe. Podman's state lives under $(MOLECULE_HOME), away from anyone else's.
MOLECULE_HOME ?= /var/tmp/hostnet-molecule
define CONTAINERS_CONF_TEXT
[containers]
default_ulimits = []
netns = "none"
default_sysctls = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
network_backend = "netavark"
[network]
network_config_dir = "$(MOLECULE_HOME)/networks"
endef
define STORAGE_CONF_TEXT
[storage]
driver = "overlay"
graphroot = "$(MOLECULE_HOME)/storage"
runroot = "$(MOLECULE_HOME)/runroot"
endef
export CONTAINERS_CONF_TEXT STORAGE_CONF_TEXT
MOLECULE_ENV = CONTAINERS_CONF=$(MOLECULE_HOME)/containers.conf CONTAINERS_STORAGE_CONF=$(MOLECULE_HOME)/storage.conf \
  HOME=$(MOLECULE_HOME)/home ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 PY_COLORS=0 NO_COLOR=1
MOLECULE_SCENARIOS ?= ports_watcher fleet

molecule-setup: deps venv
	@mkdir -p $(MOLECULE_HOME)/home $(MOLECULE_HOME)/networks
	@echo "$$CONTAINERS_CONF_TEXT" > $(MOLECULE_HOME)/containers.conf
	@echo "$$STORAGE_CONF_TEXT" > $(MOLECULE_HOME)/storage.conf

test-molecule: molecule-setup collection
	image=$$($(MOLECULE_ENV) molecule/image/build-image.sh) && \
	for s in $(MOLECULE_SCENARIOS); do \
	  $(MOLECULE_ENV) MOLECULE_IMAGE=$$image $(BIN)/molecule test -s $$s || exit 1; \
	done

# ansible-core versions the collection supports (meta/runtime.yml: >=2.16.0), each in a venv of its own,
# .build/core-<version>, pinned in tests/compat/requirements-ansible-core-<version>.txt (a changed pin
# rebuilds it), on a controller Python that version supports (pyenv's, else pythonX.Y on PATH).
# 2.16 (3.10-3.12) and 2.19 (3.11-3.13) on 3.11, CI's own and Debian 12's; 2.18 (3.11-3.13) and 2.20
# (3.12-3.14) on 3.12; 2.21 (3.12-3.14) on 3.13, the newest here: every controller Python CI has is tested.
COMPAT_CORES ?= 2.16 2.18 2.19 2.20 2.21
SANITY_CORES ?= 2.16 2.21
CORE_PYTHON_2.16 := 3.11
CORE_PYTHON_2.18 := 3.12
CORE_PYTHON_2.19 := 3.11
CORE_PYTHON_2.20 := 3.12
CORE_PYTHON_2.21 := 3.13
PYENV_ROOT ?= /root/.pyenv
python_for = $(or $(lastword $(sort $(wildcard $(PYENV_ROOT)/versions/$(1).*/bin/python$(1)))),python$(1))
$(BUILD)/core-%/stamp: tests/compat/requirements-ansible-core-%.txt
	rm -rf $(@D)
	$(call python_for,$(CORE_PYTHON_$*)) -m venv $(@D)
	$(@D)/bin/pip install -q -r $<
	@touch $@
.PRECIOUS: $(BUILD)/core-%/stamp

# ansible-test sanity on the oldest and the newest supported ansible-core, no ignore files. ansible-test
# needs the collection under ansible_collections/<ns>/<name>: copy the tracked files. Its linters get
# venvs of their own (--requirements) under a HOME of its own per version. --python is the version's
# venv Python: a controller Python, so pylint and validate-modules run (on another they are skipped),
# and 2.16's 3.11 is also Debian 12's, the managed hosts' Python, for the import and compile tests.
sanity: $(addprefix sanity-,$(SANITY_CORES))
sanity-%: deps $(BUILD)/core-%/stamp
	@root=$(BUILD)/sanity-$*/ansible_collections/hostnet/isolation && rm -rf $(BUILD)/sanity-$* && mkdir -p $$root && \
	  git ls-files -z --cached --others --exclude-standard | rsync -a --from0 --files-from=- ./ $$root/ && \
	  cd $$root && git init -q && git add -A  # ansible-test lists files through git
	@# ansible-test runs a cached get-pip script in each venv it makes: ours installs pip from PyPI
	@pipver=$$(sed -n "s/.*pip='\([0-9.]*\)'.*/\1/p" $(BUILD)/core-$*/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1 | tr . _); \
	  test -n "$$pipver" && mkdir -p $(BUILD)/ansible-test-home-$*/.ansible/test/cache && \
	  cp tests/sanity/pip_bootstrap.py $(BUILD)/ansible-test-home-$*/.ansible/test/cache/get_pip_$$pipver.py
	cd $(BUILD)/sanity-$*/ansible_collections/hostnet/isolation && HOME=$(BUILD)/ansible-test-home-$* \
	  PATH=$(BUILD)/core-$*/bin:$$PATH ansible-test sanity --requirements --python $(CORE_PYTHON_$*) --color no

# The compatibility matrix: on each of COMPAT_CORES, the collection tarball installed by that version's own
# ansible-galaxy into its venv, and tests/compat's playbook run by that version in a hermetic host (the
# filters on its controller, the host_network module: changes, then idempotent, and check mode).
test-compat: deps venv collection $(foreach v,$(COMPAT_CORES),$(BUILD)/core-$(v)/stamp)
	@for v in $(COMPAT_CORES); do \
	  ANSIBLE_COLLECTIONS_PATH=$(BUILD)/core-$$v/collections $(BUILD)/core-$$v/bin/ansible-galaxy \
	    collection install --force -p $(BUILD)/core-$$v/collections $(TARBALL) >/dev/null || exit 1; done
	COMPAT_CORES="$(COMPAT_CORES)" $(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS) tests/compat

lint: venv collection
	$(BIN)/ansible-lint --offline --profile production

# Packaging: the changelog fragments (antsibull-changelog lint) and CHANGELOG.md as the tool writes it from
# changelogs/changelog.yaml; what ansible-builder introspect reads from the installed collection (exactly
# its runtime dependencies) and what the tarball ships (tests/packaging). Its tools have a venv of their own,
# pinned in tests/packaging/requirements.txt and rebuilt when that file changes.
PKG_VENV := $(BUILD)/pkg-venv
$(PKG_VENV)/stamp: tests/packaging/requirements.txt
	rm -rf $(PKG_VENV)
	$(PYTHON) -m venv $(PKG_VENV)
	$(PKG_VENV)/bin/pip install -q -r tests/packaging/requirements.txt
	@touch $@

test-packaging: venv collection $(PKG_VENV)/stamp
	$(PKG_VENV)/bin/antsibull-changelog lint
	$(PKG_VENV)/bin/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	@$(PKG_VENV)/bin/antsibull-changelog generate --output $(BUILD)/CHANGELOG.md --output-format md && \
	  diff -u CHANGELOG.md $(BUILD)/CHANGELOG.md || \
	  { echo "CHANGELOG.md is not what antsibull-changelog generate writes: edit changelogs/, not CHANGELOG.md"; exit 1; }
	PKG_VENV=$(PKG_VENV) TARBALL=$(TARBALL) $(BIN)/python -m pytest -q -p no:cacheprovider tests/packaging

# The documentation tools pin their own ansible-core and ansible-lint: a venv of their own.
DOCS_VENV := $(BUILD)/docs-venv
$(DOCS_VENV)/stamp: tests/requirements-docs.txt
	rm -rf $(DOCS_VENV)
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/pip install -q -r tests/requirements-docs.txt
	@touch $@

# galaxy-importer, as Galaxy and Automation Hub run it on an upload, on the built tarball, with its
# default configuration but for its ansible-test step (tests/galaxy-importer.cfg): that step pulls a
# container image from a registry, and `make sanity` runs ansible-test on the same files instead.
# It exits non-zero on fatal errors only and reports the rest - a plugin ansible-doc cannot document,
# ansible-lint's findings - as ERROR: / WARNING: lines: any such line fails here.
galaxy-importer: collection $(DOCS_VENV)/stamp
	@rm -rf $(BUILD)/galaxy-importer && mkdir -p $(BUILD)/galaxy-importer
	cd $(BUILD)/galaxy-importer && GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy-importer.cfg \
	  PATH=$(DOCS_VENV)/bin:$$PATH python -m galaxy_importer.main $(TARBALL) > importer.log 2>&1 \
	  || { cat importer.log; exit 1; }
	@grep -v '^Loading ' $(BUILD)/galaxy-importer/importer.log
	@if grep -qE '^(ERROR|WARNING)' $(BUILD)/galaxy-importer/importer.log; then \
	  echo "make galaxy-importer: the importer reported errors or warnings (above)"; exit 1; fi

# antsibull-docs' linter: the docs' markup and every reference in them (O(), M(), P()) of every plugin
# and role, as the Ansible docsite renders them; references to ansible.builtin are checked too, and one
# to a collection that is neither fails. It lints the files git lists (tracked or not ignored).
docs-lint: $(DOCS_VENV)/stamp
	PATH=$(DOCS_VENV)/bin:$$PATH antsibull-docs lint-collection-docs --plugin-docs \
	  --validate-collection-refs dependent --disallow-unknown-collection-refs .

# The docs site (docs/site, made with `antsibull-docs sphinx-init`) of the installed collection, into
# .build/docs/html; Sphinx's warnings fail the build.
docs: collection $(DOCS_VENV)/stamp
	PATH=$(DOCS_VENV)/bin:$$PATH DOCS_BUILD_DIR=$(BUILD)/docs docs/site/build.sh
	@echo "docs site: $(BUILD)/docs/html/index.html"

clean:
	rm -rf $(BUILD) $(VENV)
