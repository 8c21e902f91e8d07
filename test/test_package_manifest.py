"""package.xml declares what the package imports and launches, so rosdep installs it on a robot."""

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Third-party Python modules of the package: their rosdep key, or None where pip installs them
# (requirements.txt; no rosdep key) or they are optional hardware extras.
PYTHON_DEPENDENCIES = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "serial": "python3-serial",
    "scipy": "python3-scipy",
    "skimage": "python3-skimage",
    "sklearn": "python3-sklearn",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "psutil": "python3-psutil",
    "aiohttp": "python3-aiohttp",
    # ROS packages used where a ROS install has them (the venv here has not): the numpy conversion
    # and a /tf_static publisher of the same message stand in.
    "cv_bridge": "cv_bridge",
    "tf2_ros": "tf2_ros",
    "torch": None,
    "safetensors": None,
    "openvino": None,
    "pylops": None,
    "pytorch_msssim": None,
    "rosbags": None,
    "hid": None,
    "ALP4": None,
    "nidaqmx": None,
    "gan_face_generate": None,
    "dlib": None,  # dlib-bin from pip (requirements.txt): the face locator's landmarks, lsi eval --dlib
}


def declared(*kinds) -> set:
    root = ET.parse(REPO / "package.xml").getroot()
    return {element.text.strip() for kind in kinds for element in root.iter(kind)}


def imported_modules(paths) -> set:
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"lsi_ros", "bench", "__future__"}


def test_every_ros_import_and_launched_package_is_declared():
    from ament_index_python.packages import get_packages_with_prefixes

    ros_packages = set(get_packages_with_prefixes())
    sources = [*(REPO / "lsi_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    imported = imported_modules(sources) & ros_packages
    launched = {
        m for f in (REPO / "launch").glob("*.py") for m in re.findall(r'package="(\w+)"', f.read_text())
    }
    runtime = declared("depend", "exec_depend")
    assert {"rclpy", "launch", "launch_ros", "rcl_interfaces"} <= imported
    assert "rviz2" in launched
    assert (imported | launched) - {"lsi_ros"} <= runtime, sorted((imported | launched) - runtime)
    tests = imported_modules(REPO.glob("test/*.py")) & ros_packages
    assert tests - {"lsi_ros"} <= runtime | declared("test_depend"), sorted(tests - runtime)


def test_every_third_party_python_import_is_declared_or_known_to_come_from_pip():
    from ament_index_python.packages import get_packages_with_prefixes

    sources = [*(REPO / "lsi_ros").rglob("*.py"), *(REPO / "launch").glob("*.py")]
    third_party = imported_modules(sources) - set(get_packages_with_prefixes())
    unknown = third_party - set(PYTHON_DEPENDENCIES)
    assert not unknown, f"new imports: add them to package.xml (rosdep key) or PYTHON_DEPENDENCIES: {unknown}"
    keys = {PYTHON_DEPENDENCIES[m] for m in third_party} - {None}
    assert keys <= declared("depend", "exec_depend"), sorted(keys - declared("depend", "exec_depend"))
