#!/usr/bin/env bash
# Builds and installs a ROS 2 CMake package into the venv, the way colcon would into install/: libs in
# $VENV/lib, Python in site-packages, share/<package> and lib/<package> for launch. By default the
# package is lsi_ros (its messages, node executables, launch and config files; the Python sources
# stay in the checkout, editable); install_ros2_tooling.sh builds composition_interfaces with it.
#
#   build_messages.sh VENV [PACKAGE_DIR]
set -euo pipefail
venv=$(cd "${1:?usage: build_messages.sh VENV [PACKAGE_DIR]}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
source_dir=$(cd "${2:-$repo}" && pwd)
py="$venv/bin/python"

# The message wheels' CMake exports name the include dirs of the machine that built them
# (/opt/python/...); point them at this Python and this venv's numpy.
py_inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_inc=$("$py" -c 'import numpy; print(numpy.get_include())')
for f in $(grep -l "/opt/python/cp311-cp311" "$venv"/share/*/cmake/*.cmake || true); do
  sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g" \
         -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" "$f"
done

package=$(sed -n 's#.*<name>\(.*\)</name>.*#\1#p' "$source_dir/package.xml" | head -1)
build="$venv/build/$package"
options=()
if [[ "$package" == lsi_ros ]]; then
  # The sources stay in the checkout; the node executables run this venv's Python.
  options=(-DLSI_ROS_INSTALL_PYTHON_SOURCES=OFF "-DLSI_ROS_PYTHON=$py")
fi
mkdir -p "$build"
export AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
cmake -S "$source_dir" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DBUILD_TESTING=OFF \
  -DPython3_EXECUTABLE="$py" "${options[@]}" -DCMAKE_BUILD_TYPE=Release >"$build.log" 2>&1 \
  || { tail -40 "$build.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" >>"$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
cmake --install "$build" >>"$build.log" 2>&1 || { tail -40 "$build.log"; exit 1; }
# ament_python_install_package registers a second distribution of the package (egg-info); for
# lsi_ros pip would take it for the editable install and delete the messages on its next reinstall.
rm -rf "$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/$package"-*.egg-info
echo "$package installed into $venv (log: $build.log)"
