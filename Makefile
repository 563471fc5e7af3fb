# cocola — `make demo` and `make test` set up everything on a fresh Debian 12 machine (as root):
# missing apt packages, the CMake build, the rock in ./.rocks, then the demo or the test suites.
LUA        ?= lua5.4
ROCKS_TREE := .rocks
JOBS       ?= $(shell nproc)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := lua5.4 liblua5.4-dev luarocks lua-busted lua-cjson lua-argparse lua-filesystem \
                cmake gcc make pkg-config libopenblas-dev libopenblas0-openmp liblapacke-dev \
                libsndfile1-dev libsoxr-dev libfftw3-dev libdnnl-dev lua-yaml \
                fluidsynth fluid-soundfont-gm gnuplot-nox libopenmpi-dev openmpi-bin
# extra CMake settings for the build/ tree, e.g. CMAKE_FLAGS="-DCOCOLA_CUDA=OFF"
CMAKE_FLAGS ?=
ROCK_ENV = eval "$$(luarocks --lua-version=5.4 --tree $(ROCKS_TREE) path)"

MIDI_PACKAGES := simutrans-data freedink-data planetblupi-music-midi mma timgm6mb-soundfont opl3-soundfont

.PHONY: all deps build rock test test-faults test-chaos fuzz fuzz-ci fuzz-build fuzz-deps test-asan test-asan-ci test-tsan asan-build tsan-build demo bench bench-cuda test-cuda-emulated fixtures midi-stems cross-sound-stems oracle device-bundle notebooks notebooks-env clean

all: rock

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	cmake --build build -j$(JOBS)

rock: build
	luarocks --lua-version=5.4 --tree $(ROCKS_TREE) make rockspec/cocola-scm-1.rockspec >/dev/null

test: rock
	@$(ROCK_ENV); sh tests/run_all.sh

# fault injection (tests/faults): tests/faults/fault_shim.c built as an LD_PRELOAD library
# (build/fault_shim.so); every allocation of each workload failed in turn, then writes failed with
# ENOSPC and EIO under each file writer; per workload the points tried and their outcomes, per
# writer the cases, and a closing line "N passed, N failed" (FAULT_STRIDE=N: every Nth point only)
FAULT_STRIDE ?= 1
test-faults: rock
	gcc -std=c11 -O1 -Wall -Wextra -Werror -shared -fPIC -o build/fault_shim.so tests/faults/fault_shim.c -ldl
	@$(ROCK_ENV); $(LUA) tests/faults/driver.lua all $(FAULT_STRIDE)

# kill anywhere (tests/chaos/chaos.lua): CHAOS_TRIALS seeded trials per target (train_cocola, prepare,
# train-ldm, train-componet, train-msdm),
# each run SIGKILLed at random moments and resumed, its files checked and its results compared with an
# uninterrupted run's; prints trials, kills, files checked, identical resumed runs, "N passed, N failed"
CHAOS_SEED ?= 1
CHAOS_TRIALS ?= 20
test-chaos: rock
	@$(ROCK_ENV); LUA_PATH="./lua/?.lua;./lua/?/init.lua;$$LUA_PATH" LUA_CPATH="./build/?.so;$$LUA_CPATH" \
	  $(LUA) tests/chaos/chaos.lua seed=$(CHAOS_SEED) trials=$(CHAOS_TRIALS)

# libFuzzer harnesses (tests/fuzz) built with clang, ASan and UBSan into build-fuzz/; `make fuzz` runs
# each for FUZZ_SECONDS and prints executions, CPU time, coverage and crashes; fuzz-ci is the short run
FUZZ_SECONDS ?= 60
FUZZ_CMAKE := -DCMAKE_BUILD_TYPE=Debug -DCOCOLA_FUZZ=ON -DCOCOLA_NATIVE=OFF -DCOCOLA_ONEDNN=OFF -DCOCOLA_CUDA=OFF
FUZZ_PACKAGES := clang libclang-rt-dev libomp-dev
fuzz-deps:
	@missing=""; for p in $(FUZZ_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

fuzz-build: deps fuzz-deps
	CC=clang cmake -S . -B build-fuzz $(FUZZ_CMAKE) >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target fuzzers

fuzz: fuzz-build
	@bash tests/fuzz/run.sh $(FUZZ_SECONDS)

fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# the suites under sanitizers, clang builds beside build/ (tests/sanitizers/README.md has the figures):
# test-asan: AddressSanitizer + UndefinedBehaviorSanitizer (leaks checked) in build-asan/, the C tests
#   and the whole busted suite (or ASAN_SPECS); test-asan-ci: the C tests and the specs of cocola's C
#   code paths (tests/sanitizers/asan_ci_specs.txt), what .ci/run runs;
# test-tsan: ThreadSanitizer (LLVM's libomp with Archer) in build-tsan/, the C tests and the threaded
#   specs (tests/sanitizers/tsan_specs.txt, or TSAN_SPECS)
# (no oneDNN, CUDA or OpenMP OpenBLAS there: oneDNN and that OpenBLAS run on libgomp, beside clang's libomp)
SAN_CMAKE := -DCMAKE_BUILD_TYPE=Release -DCOCOLA_NATIVE=OFF -DCOCOLA_ONEDNN=OFF -DCOCOLA_CUDA=OFF -DCOCOLA_BLAS_OPENMP=OFF
ASAN_SPECS ?=
TSAN_SPECS ?=
asan-build: deps fuzz-deps
	CC=clang cmake -S . -B build-asan $(SAN_CMAKE) -DCOCOLA_SANITIZE=address >/dev/null
	cmake --build build-asan -j$(JOBS)

tsan-build: deps fuzz-deps
	CC=clang cmake -S . -B build-tsan $(SAN_CMAKE) -DCOCOLA_SANITIZE=thread >/dev/null
	cmake --build build-tsan -j$(JOBS)

test-asan: asan-build
	@$(ROCK_ENV); bash tests/sanitizers/run.sh address $(ASAN_SPECS)

test-asan-ci: asan-build
	@$(ROCK_ENV); bash tests/sanitizers/run.sh address $$(grep -v -E '^(#|$$)' tests/sanitizers/asan_ci_specs.txt)

test-tsan: tsan-build
	@$(ROCK_ENV); bash tests/sanitizers/run.sh thread $(TSAN_SPECS)

demo: rock
	@$(ROCK_ENV); $(LUA) recipes/demo.lua

bench: rock
	@$(ROCK_ENV); $(LUA) recipes/bench_engine.lua

# the COCOLA training step and inference on the GPU, beside PyTorch where it is installed
bench-cuda: rock
	@$(ROCK_ENV); $(LUA) recipes/bench_cuda.lua

# the CUDA backend's code run on the host (no GPU needed): the kernels compiled as host C++ with
# stand-ins for the CUDA runtime, cuBLAS and cuDNN, through the #cuda parity specs
test-cuda-emulated: deps
	cmake -S . -B build-emu -DCMAKE_BUILD_TYPE=Release -DCOCOLA_CUDA=EMULATE >/dev/null
	cmake --build build-emu -j$(JOBS)
	busted --cpath="./build-emu/?.so" spec/cuda_spec.lua spec/cuda_parity_spec.lua spec/audioldm2_spec.lua \
	  spec/audioldm2_pipeline_spec.lua spec/msdm_unet_spec.lua spec/msdm_sampling_spec.lua spec/msdm_recipes_spec.lua

# renders the Debian MIDI songs into a Slakh-style stem dataset under data/midi_stems (resumable)
midi-stems: rock
	@missing=""; for p in $(MIDI_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@$(ROCK_ENV); $(LUA) recipes/make_midi_stems.lua output=data/midi_stems

# the test songs of data/midi_stems rendered with two soundfonts no model here trains on (same
# track numbering), for cross-sound evaluation: data/midi_stems_timgm, data/midi_stems_opl3
cross-sound-stems: midi-stems
	@$(ROCK_ENV); $(LUA) recipes/make_midi_stems.lua splits=test soundfont=/usr/share/sounds/sf2/TimGM6mb.sf2 output=data/midi_stems_timgm
	@$(ROCK_ENV); $(LUA) recipes/make_midi_stems.lua splits=test soundfont=/usr/share/sounds/sf2/OPL-3_FM_128M.sf2 output=data/midi_stems_opl3

# build-device/: what recipes/device/train.sh needs on a GPU machine without this project's
# dependencies (recipes/device/bundle.sh; e.g. DEVICE_BUNDLE_FLAGS="--midi data/mma_songs")
DEVICE_BUNDLE_FLAGS ?=
device-bundle:
	JOBS=$(JOBS) bash recipes/device/bundle.sh $(DEVICE_BUNDLE_FLAGS)

# the reference's own libraries, for spec/oracle_spec.lua (reuses Debian's torch)
oracle:
	$(SUDO) apt-get install -y -qq python3-venv python3-torch python3-scipy >/dev/null
	/usr/bin/python3 -m venv --system-site-packages /opt/oracle
	/opt/oracle/bin/pip install -q librosa==0.10.1
	/opt/oracle/bin/pip install -q --no-deps efficientnet_pytorch==0.7.1

# notebooks/*.ipynb executed headless, in place, on the project's Lua kernel (ILua on lua5.4 with an
# inline-image hook, notebooks/kernel): a venv in .venv-notebooks with Jupyter and ILua, the kernel
# spec installed into it (it finds this checkout's lua/ and build/ first), then every notebook run;
# any cell error fails the target. `.venv-notebooks/bin/jupyter lab` opens them with that kernel.
NB_VENV     := .venv-notebooks
NB_PACKAGES := ilua==0.2.1 nbclient==0.11.0 nbformat==5.11.1 jupyter_client==8.10.0 jupyter_core==5.9.1
NOTEBOOKS   ?= $(sort $(wildcard notebooks/*.ipynb))
notebooks: rock notebooks-env
	@$(NB_VENV)/bin/python notebooks/kernel/execute.py $(NOTEBOOKS)

# the venv and the kernel spec alone (idempotent; fails where PyPI cannot be reached)
notebooks-env:
	@dpkg-query -W -f='$${Status}' python3-venv 2>/dev/null | grep -q "ok installed" || \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv >/dev/null; }
	@[ -x $(NB_VENV)/bin/python ] || /usr/bin/python3 -m venv $(NB_VENV)
	@$(NB_VENV)/bin/python -c "import ilua, nbclient" 2>/dev/null || $(NB_VENV)/bin/pip install -q $(NB_PACKAGES)
	@$(ROCK_ENV); $(NB_VENV)/bin/python notebooks/kernel/install.py $(LUA)

fixtures:
	/usr/bin/python3 spec/fixtures/gen_ops.py

clean:
	rm -rf build build-emu build-fuzz build-asan build-tsan build.luarocks build-device build-device-core $(ROCKS_TREE)
