#!/usr/bin/env bash
# Builds and installs the lsi_ros messages (and the node executables, launch and config files) into
# the venv, the way colcon would into install/: libs in $VENV/lib, Python in site-packages,
# share/lsi_ros and lib/lsi_ros for launch. The Python sources stay in the checkout (editable).
set -euo pipefail
venv=$(cd "${1:?usage: build_messages.sh VENV}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$venv/bin/python"

# The message wheels' CMake exports name the include dirs of the machine that built them
# (/opt/python/...); point them at this Python and this venv's numpy.
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
for f in $(grep -l "/opt/python/cp311-cp311" "$venv"/share/*/cmake/*.cmake || true); do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" "$f"
done

export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
# Interface packages a ROS install has but PyPI does not (interfaces/README.md).
for package in "$repo"/interfaces/*/; do
  name=$(basename "$package")
  build="$venv/build/$name"
  mkdir -p "$build"
  { cmake -S "$package" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
      -DPython3_EXECUTABLE="$py" -DCMAKE_BUILD_TYPE=Release \
    && cmake --build "$build" -j"$(nproc)" && cmake --install "$build"; } >"$build.log" 2>&1 \
    || { tail -40 "$build.log"; exit 1; }
done

build="$venv/build/lsi_ros"
mkdir -p "$build"
cmake -S "$repo" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$py" -DLSI_ROS_INSTALL_PYTHON_SOURCES=OFF -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 \
  || { tail -40 "$build.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >>"$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
cmake --install "$build" >>"$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
# ament_python_install_package registers a second "lsi_ros" distribution (egg-info); pip would take
# it for the editable install and delete the messages on its next reinstall.
rm -rf "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"/lsi_ros-*.egg-info
echo "messages installed into $venv (log: $build.log)"
