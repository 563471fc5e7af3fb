# cocola — `make demo` and `make test` set up everything on a fresh Debian 12 machine (as root):
# missing apt packages, the CMake build, the rock in ./.rocks, then the demo or the test suites.
LUA        ?= lua5.4
ROCKS_TREE := .rocks
JOBS       ?= $(shell nproc)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := lua5.4 liblua5.4-dev luarocks lua-busted lua-cjson lua-argparse lua-filesystem \
                cmake gcc make pkg-config libopenblas-dev liblapacke-dev \
                libsndfile1-dev libsoxr-dev libfftw3-dev lua-yaml \
                fluidsynth fluid-soundfont-gm
ROCK_ENV = eval "$$(luarocks --lua-version=5.4 --tree $(ROCKS_TREE) path)"

MIDI_PACKAGES := simutrans-data freedink-data planetblupi-music-midi mma

.PHONY: all deps build rock test demo bench fixtures midi-stems oracle clean

all: rock

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j$(JOBS)

rock: build
	luarocks --lua-version=5.4 --tree $(ROCKS_TREE) make rockspec/cocola-scm-1.rockspec >/dev/null

test: rock
	@$(ROCK_ENV); sh tests/run_all.sh

demo: rock
	@$(ROCK_ENV); $(LUA) recipes/demo.lua

bench: rock
	@$(ROCK_ENV); $(LUA) recipes/bench_engine.lua

# renders the Debian MIDI songs into a Slakh-style stem dataset under data/midi_stems (resumable)
midi-stems: rock
	@missing=""; for p in $(MIDI_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@$(ROCK_ENV); $(LUA) recipes/make_midi_stems.lua output=data/midi_stems

# the reference's own libraries, for spec/oracle_spec.lua (reuses Debian's torch)
oracle:
	$(SUDO) apt-get install -y -qq python3-venv python3-torch python3-scipy >/dev/null
	/usr/bin/python3 -m venv --system-site-packages /opt/oracle
	/opt/oracle/bin/pip install -q librosa==0.10.1
	/opt/oracle/bin/pip install -q --no-deps efficientnet_pytorch==0.7.1

fixtures:
	/usr/bin/python3 spec/fixtures/gen_ops.py

clean:
	rm -rf build build.luarocks $(ROCKS_TREE)
