# lapo_ros developer entry points. `make demo` runs the whole pipeline on an embedded default,
# `make test` builds the ROS 2 package with colcon and runs every test through colcon, in
# one pytest-xdist worker per CPU (4 at most; test/conftest.py: a DDS domain and a thread each).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.requirements-installed
# CPU rendering for the ALOHA sim (MuJoCo through Mesa): EGL by default, OSMesa as the fallback
RENDER_PACKAGES := libegl1 libgl1-mesa-dri libosmesa6

# ROS 2 traffic stays on this machine; logs go to a temporary folder.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 42
export ROS_LOG_DIR ?= $(shell mktemp -d -t lapo_ros_log.XXXXXX)
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp
# The venv is an ament prefix: share/lapo_ros from `pip install .`, lib/lapo_ros from setup.
export AMENT_PREFIX_PATH := $(CURDIR)/$(VENV)$(if $(AMENT_PREFIX_PATH),:$(AMENT_PREFIX_PATH))

.PHONY: setup demo demo-aloha test lint build benchmarks clean

# Fresh Python 3.11 machine -> venv with pinned torch, ROS 2 wheels, onnxruntime-gpu, colcon,
# the [aloha] extra (gym-aloha's MuJoCo scenes; they render with the system's EGL/Mesa, whose
# Debian packages setup installs when it runs as root with apt-get);
# then the package itself (console scripts + share/lapo_ros), its executables linked into
# lib/lapo_ros where `ros2 run`/`ros2 launch` look. Idempotent and quick on re-runs.
setup: $(STAMP)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation .
	$(BIN)/python tools/link_ros_executables.py lapo_ros
	@if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1 ' || \
	    ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libOSMesa.so'; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    timeout 600 apt-get install -y -q --no-install-recommends $(RENDER_PACKAGES) \
	      >/dev/null 2>&1 || echo "note: apt-get install $(RENDER_PACKAGES) failed"; \
	  else echo "note: the ALOHA sim renders with Debian's $(RENDER_PACKAGES) (EGL;" \
	    "libosmesa6 for MUJOCO_GL=osmesa): apt-get install them as root"; fi; fi

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24" "setuptools>=70,<80" wheel
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

demo: setup
	$(BIN)/python -m lapo_ros.demo.pipeline --out demo_output

# The same chain on a gym-aloha scene (the [aloha] extra), into demo_aloha_output:
# TASK=transfer_cube (default) or TASK=insertion.
TASK ?= transfer_cube
demo-aloha: setup
	$(BIN)/python -m lapo_ros.demo.aloha_pipeline --task $(TASK) --out demo_aloha_output

lint: setup
	$(BIN)/ruff check .

build: setup
	source $(BIN)/activate && colcon build --base-paths . --build-base build --install-base install
	test -x install/lapo_ros/lib/lapo_ros/policy_node
	test -x install/lapo_ros/lib/lapo_ros/bag_to_hdf5

test: lint build
	source $(BIN)/activate && colcon test --base-paths . --build-base build \
	  --install-base install --packages-select lapo_ros --event-handlers console_direct+ \
	  --return-code-on-test-failure --pytest-args -q -p no:cacheprovider \
	  --numprocesses logical --maxprocesses 4 --dist loadgroup --no-loadscope-reorder
	$(BIN)/python tools/test_summary.py build/lapo_ros/pytest.xml

benchmarks: setup
	$(BIN)/python benchmarks/run_all.py --out BENCHMARKS.md

clean:
	rm -rf build install log demo_output demo_aloha_output
