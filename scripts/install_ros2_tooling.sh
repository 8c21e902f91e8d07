#!/usr/bin/env bash
# Installs the ROS 2 launch system and command-line tools (`ros2 launch`, `ros2 topic`, ...) into the
# venv from their sources, and builds composition_interfaces with rosidl (launch_ros imports it; it
# is not on PyPI). These packages are pure Python: pip installs them without their ROS dependency
# declarations (--no-deps), the Kilted wheels and requirements-ros.txt provide what they import.
#
#   install_ros2_tooling.sh VENV SOURCE [NAME=URL@COMMIT ...]
#
# SOURCE holds one folder per upstream repository (launch/, launch_ros/, ros2cli/, rosidl_runtime_py/,
# rcl_interfaces/). A repository folder SOURCE lacks is cloned from its NAME=URL@COMMIT, if given.
set -euo pipefail
venv=$(cd "${1:?usage: install_ros2_tooling.sh VENV SOURCE [NAME=URL@COMMIT ...]}" && pwd)
source_dir=${2:?usage: install_ros2_tooling.sh VENV SOURCE [NAME=URL@COMMIT ...]}
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)

for entry in "$@"; do
  name=${entry%%=*} url=${entry#*=}
  if [[ ! -d "$source_dir/$name" ]]; then
    echo "cloning ${url%@*} at ${url##*@} into $source_dir/$name"
    git clone --quiet "${url%@*}" "$source_dir/$name"
    git -C "$source_dir/$name" checkout --quiet "${url##*@}"
  fi
done

packages=(
  launch/launch launch/launch_xml launch/launch_yaml
  launch_ros/launch_ros launch_ros/ros2launch
  ros2cli/ros2cli ros2cli/ros2topic ros2cli/ros2node ros2cli/ros2param ros2cli/ros2run
  ros2cli/ros2pkg ros2cli/ros2service ros2cli/ros2interface ros2cli/ros2lifecycle
  rosidl_runtime_py
  rcl_interfaces/composition_interfaces
)
# pip builds a source folder in place: work on a copy (the source may be read-only), without the
# build outputs a previous install may have left in it.
stage="$venv/build/ros2-src"
rm -rf "$stage"
for package in "${packages[@]}"; do
  [[ -d "$source_dir/$package" ]] || { echo "missing $source_dir/$package" >&2; exit 1; }
  mkdir -p "$stage/$(dirname "$package")"
  cp -r "$source_dir/$package" "$stage/$package"
  chmod -R u+w "$stage/$package"
  rm -rf "$stage/$package/build" "$stage/$package"/*.egg-info
done

python_packages=("${packages[@]/#/$stage/}")
unset 'python_packages[-1]'
"$venv/bin/python" -m pip install --no-deps --no-build-isolation "${python_packages[@]}" >"$stage.log" 2>&1 \
  || { tail -40 "$stage.log"; exit 1; }
bash "$repo/scripts/build_messages.sh" "$venv" "$stage/rcl_interfaces/composition_interfaces"
echo "ROS 2 launch and command-line tools installed into $venv"
