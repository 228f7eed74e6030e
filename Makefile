# nsfs-fuse: `make run` sets up and mounts at /run/namespaces, `make test` runs the tests.
# Both need root (the daemon reads every process's namespaces) and are safe to repeat.

PYTHON     ?= python3
VENV       := .venv
MOUNTPOINT ?= /run/namespaces
SBIN       ?= /usr/local/sbin
BIN        ?= /usr/local/bin
UNITDIR    ?= /etc/systemd/system
APT_PACKAGES := fuse3 libfuse3-dev pkg-config util-linux iproute2 busybox-static bubblewrap graphviz systemd python3-seccomp
# What `make test-kernel` adds: qemu, depmod for the guest kernel's modules, mkfs.ext4 for its disk.
KERNEL_APT_PACKAGES := qemu-system-x86 kmod e2fsprogs

.PHONY: setup install uninstall run stop test test-kernel test-kernel-part test-kernels bench-kernel unit lint compare soak bench bench-scale bench-daemons clean image

# Debian's fuse3 (mount.fuse3, fusermount3), what pyfuse3 builds against, and the tests' ip, nsenter,
# setpriv, busybox (the static build: the guest of `make test-kernel` boots with it too),
# Graphviz's dot, which draws `lsnsfs --dot`, and systemd-analyze, which checks the unit (the
# package does not make systemd this machine's init), and libseccomp's Python binding, with which a test
# makes pidfd_getfd fail as on a kernel before 5.6.
.system-deps:
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); }
	@[ -e /dev/fuse ] || modprobe fuse
	@touch $@

$(VENV)/.installed: .system-deps pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $@

# mount(8) runs helpers with a fixed PATH that has /usr/local/sbin but not the venv.
setup: $(VENV)/.installed
	@ln -sfn $(CURDIR)/$(VENV)/bin/nsfs $(SBIN)/nsfs
	@ln -sfn $(CURDIR)/$(VENV)/bin/lsnsfs $(BIN)/lsnsfs

# The systemd service (systemd/nsfs.service): then `systemctl enable --now nsfs`.
install: setup
	install -m 644 systemd/nsfs.service $(UNITDIR)/nsfs.service
	@if [ -d /run/systemd/system ]; then systemctl daemon-reload && echo "installed: systemctl enable --now nsfs"; fi

uninstall:
	@if [ -d /run/systemd/system ]; then systemctl disable --now nsfs 2>/dev/null || true; fi
	rm -f $(UNITDIR)/nsfs.service $(SBIN)/nsfs $(BIN)/lsnsfs

run: setup
	@mkdir -p $(MOUNTPOINT)
	@mountpoint -q $(MOUNTPOINT) || mount -t fuse nsfs $(MOUNTPOINT)
	@ls -l $(MOUNTPOINT) | head -n 12

stop:
	@! mountpoint -q $(MOUNTPOINT) || umount $(MOUNTPOINT)

test: setup image
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The suite on Debian's own Linux KERNEL (5.10, 6.1, 6.12, 7.3: any series a Debian suite the
# mirror serves carries, read through the script's own apt in .kernels/apt, never the machine's
# sources), booted under qemu with this checkout visible (scripts/test-kernel).
# KERNEL_TESTS narrows it: make test-kernel KERNEL=7.3 KERNEL_TESTS=tests/test_cli.py
KERNEL ?= 6.1
KERNEL_TESTS ?= tests
.kernel-deps: .system-deps
	@dpkg -s $(KERNEL_APT_PACKAGES) >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(KERNEL_APT_PACKAGES); }
	@touch $@

test-kernel: setup .kernel-deps
	KERNEL=$(KERNEL) KERNEL_TESTS='$(KERNEL_TESTS)' scripts/test-kernel

# The kernel-sensitive part of the suite (entries, discovery, visibility, lifetime, the kernel's
# list) on KERNEL (`make test-kernel-part KERNEL=5.10`), or on each kernel of the README's Kernels
# table in turn (`make test-kernels`): 11 to 25 minutes each under emulation. Every kernel runs;
# the exit status is non-zero if any failed, and the last line says which.
KERNELS ?= 5.10 6.1 6.12 7.3
KERNEL_PART := -rs tests/test_entries.py tests/test_discovery.py tests/test_visibility.py tests/test_lifetime.py \
	tests/test_listed.py --deselect tests/test_discovery.py::test_a_long_list_reads_whole
test-kernel-part: setup .kernel-deps
	KERNEL=$(KERNEL) KERNEL_TESTS='$(KERNEL_PART)' scripts/test-kernel
test-kernels: setup .kernel-deps
	@failed=""; for k in $(KERNELS); do \
	  KERNEL=$$k KERNEL_TESTS='$(KERNEL_PART)' scripts/test-kernel || failed="$$failed $$k"; \
	done; \
	if [ -n "$$failed" ]; then echo "test-kernels: failed on$$failed"; exit 1; fi; echo "test-kernels: passed on $(KERNELS)"

# The lifetime rows f) to j) of the benchmark on that kernel, in a world sized for the emulated guest.
KERNEL_BENCH_ARGS ?= --only-lifetime --procs 200 --fds 2000 --orphans 20 --reps 3
bench-kernel: setup .kernel-deps
	KERNEL=$(KERNEL) KERNEL_RUN='-m bench.bench $(KERNEL_BENCH_ARGS)' scripts/test-kernel

# The pure tests alone: no root, no /dev/fuse (once `make setup` has made the venv).
unit:
	$(VENV)/bin/python -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check nsfs_fuse tests bench
	$(VENV)/bin/ruff format --check nsfs_fuse tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Namespaces made and destroyed at RATE a second for SOAK_SECONDS while readers check every answer.
SOAK_SECONDS ?= 60
RATE ?= 200
soak: setup
	$(VENV)/bin/python -m bench.soak --seconds $(SOAK_SECONDS) --rate $(RATE)

# The mount against lsns, a plain /proc scan and tmpfs, at 5,000 processes (BENCH_ARGS to resize);
# then the scale series, 1,000 to 20,000 processes, written with its picture to docs/bench.
bench: setup
	$(VENV)/bin/python -m bench.bench $(BENCH_ARGS)
	$(VENV)/bin/python -m bench.scale $(SCALE_ARGS)

# The scale series alone (SCALE_ARGS='--sizes 1000,5000' for a short one).
bench-scale: setup
	$(VENV)/bin/python -m bench.scale $(SCALE_ARGS)

# Three daemons at once: what only daemons pin is freed by the kernel as soon as with none.
bench-daemons: setup
	$(VENV)/bin/python -m bench.several $(BENCH_ARGS)

# What the mount finds that lsns does not, per kind of holder (COUNT of each).
compare: setup
	$(VENV)/bin/python -m bench.lsns_compare $(COUNT)

clean:
	rm -rf $(VENV) .system-deps .kernel-deps .kernels .image .pytest_cache .mypy_cache .ruff_cache *.egg-info

# The fleet's image (image/Containerfile, scripts/make-image): a base made by debootstrap from
# Debian's packages, the project's wheels built here; no registry but the package registries.
IMAGE ?= localhost/nsfs-fuse:latest
# The image's tools; with systemd-nspawn and uidmap (rootless podman), the engines whose
# containers tests/test_containers.py names.
IMAGE_APT_PACKAGES := debootstrap podman runc uidmap systemd-container
image: setup
	@dpkg -s $(IMAGE_APT_PACKAGES) >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(IMAGE_APT_PACKAGES); }
	IMAGE=$(IMAGE) scripts/make-image
