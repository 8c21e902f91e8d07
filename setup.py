"""Python packaging of lsi_ros for pip (the `lsi` CLI and node console scripts).

On a ROS 2 install, colcon builds this repository as an ament_cmake package (package.xml): the
messages are generated and these sources are installed next to them (CMakeLists.txt). This file
serves machines without ROS, where the Makefile installs the package into a venv.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def node_scripts():
    """One console script per node module, named after it (as CMakeLists.txt does for lib/lsi_ros)."""
    nodes = sorted(p.stem for p in (HERE / "lsi_ros" / "nodes").glob("[a-z]*.py"))
    return [f"{name} = lsi_ros.nodes.{name}:main" for name in nodes]


setup(
    name="lsi_ros",
    version="0.1.0",
    description="Latent Space Imaging: a single-pixel camera imaging into a generative latent space",
    license="Apache-2.0",
    packages=find_packages(include=["lsi_ros", "lsi_ros.*"]),
    package_data={"lsi_ros.web": ["page/*"]},
    python_requires=">=3.10",
    install_requires=[
        line.split("#")[0].strip()
        for line in (HERE / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ],
    # ViALUX ALP-4 DMDs (backend alp4): pip install lsi_ros[alp4]; also needs ViALUX's ALP library.
    # NI DAQ photodiode (backend nidaqmx): pip install lsi_ros[nidaq]; also needs NI's NI-DAQmx driver.
    extras_require={
        "alp4": ["alp4lib==1.1.0"],
        "nidaq": ["nidaqmx==1.7.0"],
    },
    entry_points={"console_scripts": ["lsi = lsi_ros.cli:main", *node_scripts()]},
)
