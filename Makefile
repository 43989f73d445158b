# Two commands on a fresh machine: `make demo` and `make test`. Both build the environment first.
# `make test` runs everything (CI runs it through .ci/run) and lists whatever it skipped (-ra, in
# pyproject.toml); `make test-fast` is the unit tier for the edit-test loop: no test marked slow (training,
# whole test sets, the wheel), browser or ddp, in under a minute on two cores.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test test-fast lint demo clean browser runtime runtime-arm runtime-deps fuzz

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: venv browser runtime runtime-arm
	$(BIN)/ruff check src tests fuzz benchmarks scripts
	$(BIN)/python -m pytest -q

test-fast: venv runtime
	$(BIN)/python -m pytest -q -m "not slow and not browser and not ddp"

# Coverage-guided fuzzing (atheris) of the .bbcu, .safetensors and image readers, FUZZ_SECONDS each
# (make test runs them for seconds); the corpus grows in build/fuzz/, findings land in build/fuzz/ too.
FUZZ_SECONDS ?= 300
fuzz: venv
	mkdir -p build/fuzz
	for target in packed weights image; do \
		(cd build/fuzz && ../../$(BIN)/python ../../fuzz/fuzz_loaders.py $$target corpus-$$target \
			-max_total_time=$(FUZZ_SECONDS)) || exit 1; \
	done

lint: venv
	$(BIN)/ruff check src tests fuzz benchmarks scripts
	$(BIN)/ruff format --check src tests fuzz

# Headless Chromium and its driver for tests/test_serve_browser.py (Debian packages; CI runs as root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

# The C runtime (runtime/, docs/deploy.md): libbbcu and bbcu-run for this machine, plus the
# AddressSanitizer build the hostile-file tests run; runtime-arm cross-builds for aarch64 and runs the
# kernel self-test and the end-to-end comparison with the x86 build under qemu-aarch64.
runtime: runtime-deps
	$(MAKE) -C runtime all asan

runtime-arm: runtime-deps venv
	$(MAKE) -C runtime test-arm
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_runtime_c.py -k aarch64

# Debian packages: libpng for the host, the aarch64 cross compiler, qemu-user and arm64 libpng (multiarch).
runtime-deps:
	@test -f /usr/include/png.h && command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null \
		&& test -f /usr/lib/aarch64-linux-gnu/libpng16.a || { \
		dpkg --add-architecture arm64 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev make \
			libpng-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libpng-dev:arm64; }

demo: venv
	$(BIN)/bbcu demo

clean:
	rm -rf $(VENV) build src/*.egg-info
