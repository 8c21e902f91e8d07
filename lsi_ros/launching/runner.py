"""Evaluate a standard ROS 2 launch file and start its nodes as processes, without ``ros2 launch``.

The launch file is imported against ``compat/`` (a subset of launch/launch_ros); every Node becomes
the command line launch_ros would build: ``lib/<package>/<executable> <arguments> --ros-args -r
__node:=<name> -r __ns:=<ns> --params-file <file>... -r <from>:=<to>``, with dict parameters
written to a temporary ``/**`` YAML file as launch_ros does.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

COMPAT_DIR = str(Path(__file__).with_name("compat"))


class LaunchError(RuntimeError):
    """A launch file that cannot be evaluated or a node whose executable or files do not resolve."""


@dataclass
class NodeProcess:
    """One node to start: its resolved command line and the files it reads."""

    name: str
    command: list
    executable: str
    parameter_files: list = field(default_factory=list)


@dataclass
class _Context:
    launch_configurations: dict


def _import_compat():
    if COMPAT_DIR not in sys.path:
        sys.path.insert(0, COMPAT_DIR)
    for name in [m for m in sys.modules if m.split(".")[0] in ("launch", "launch_ros")]:
        if not getattr(sys.modules[name], "__file__", "") or COMPAT_DIR not in sys.modules[name].__file__:
            del sys.modules[name]
    import launch
    import launch_ros

    return launch, launch_ros


def loopback_profile() -> Path | None:
    """The Fast DDS profile that keeps DDS on 127.0.0.1 (config/fastdds_localhost.xml), from the source
    tree or the install."""
    for root in (Path(__file__).resolve().parents[2], Path(sys.prefix) / "share" / "lsi_ros"):
        if (root / "config" / "fastdds_localhost.xml").is_file():
            return root / "config" / "fastdds_localhost.xml"
    return None


def ros_environment(base=None) -> dict:
    """The environment nodes run in here: loopback-only discovery and transports (unless a Fast DDS
    profile is set already) and the venv on the ament index."""
    env = dict(os.environ if base is None else base)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if loopback_profile() is not None:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(loopback_profile()))
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if (Path(sys.prefix) / "share" / "lsi_ros").is_dir() and sys.prefix not in prefixes:
        prefixes.append(sys.prefix)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    return env


def _use_ros_environment() -> None:
    """Make this process's ament index lookups, and a DDS participant it starts later (a monitor),
    see what the started nodes will see."""
    env = ros_environment()
    for name in ("AMENT_PREFIX_PATH", "FASTDDS_DEFAULT_PROFILES_FILE"):
        if name in env:
            os.environ[name] = env[name]


def find_launch_file(package_or_path: str, file_name: str | None = None) -> Path:
    """Resolve ``<package> <file>`` through the ament index, or a path to a launch file."""
    if file_name is None:
        path = Path(package_or_path)
    else:
        from ament_index_python.packages import get_package_share_directory

        _use_ros_environment()
        path = Path(get_package_share_directory(package_or_path)) / "launch" / file_name
    if not path.is_file():
        raise LaunchError(f"launch file not found: {path}")
    return path


def plan(launch_file, launch_arguments: dict | None = None, tmp_dir: str | None = None) -> list:
    """Evaluate the launch file with the given ``name:=value`` arguments; return the nodes to start."""
    _import_compat()
    _use_ros_environment()
    tmp_dir = tmp_dir or tempfile.mkdtemp(prefix="lsi_launch_")
    nodes = []
    _evaluate(Path(launch_file), dict(launch_arguments or {}), tmp_dir, nodes, strict=True)
    return nodes


def _evaluate(launch_file: Path, arguments: dict, tmp_dir: str, nodes: list, strict: bool) -> None:
    """Add the nodes of one launch file (and of the files it includes) to ``nodes``."""
    launch, launch_ros = _import_compat()
    spec = importlib.util.spec_from_file_location(
        f"_lsi_launch_{launch_file.stem.replace('.', '_')}", launch_file
    )
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
    except Exception as error:
        raise LaunchError(f"cannot evaluate {launch_file}: {error}") from error

    declared = [e for e in description.entities if isinstance(e, launch.actions.DeclareLaunchArgument)]
    unknown = set(arguments) - {d.name for d in declared}
    if strict and unknown:
        raise LaunchError(
            f"unknown launch arguments {sorted(unknown)}; declared: {[d.name for d in declared]}"
        )
    context = _Context(launch_configurations=dict(arguments))
    subst = launch.substitutions.perform_substitutions
    for declaration in declared:
        if declaration.name in arguments:
            value = arguments[declaration.name]
        elif declaration.default_value is not None:
            value = subst(context, declaration.default_value)
        else:
            raise LaunchError(f"launch argument '{declaration.name}' is required")
        if declaration.choices and value not in declaration.choices:
            raise LaunchError(f"launch argument '{declaration.name}'={value!r} not in {declaration.choices}")
        context.launch_configurations[declaration.name] = value

    for entity in description.entities:
        if entity.condition is not None and not entity.condition.evaluate(context):
            continue
        if isinstance(entity, launch.actions.IncludeLaunchDescription):
            included = Path(subst(context, entity.launch_description_source.location))
            child_arguments = {subst(context, k): subst(context, v) for k, v in entity.launch_arguments}
            _evaluate(included, child_arguments, tmp_dir, nodes, strict=False)
        elif isinstance(entity, launch_ros.actions.Node):
            nodes.append(_node_process(entity, context, subst, tmp_dir, len(nodes)))


def _node_process(node, context, subst, tmp_dir, index) -> NodeProcess:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    package = subst(context, node.package)
    executable_name = subst(context, node.executable)
    try:
        executable = Path(get_package_prefix(package)) / "lib" / package / executable_name
    except PackageNotFoundError as error:
        raise LaunchError(f"package '{package}' is not on the ament index (AMENT_PREFIX_PATH)") from error
    if not os.access(executable, os.X_OK):
        raise LaunchError(f"executable '{executable_name}' of package '{package}' not found at {executable}")
    name = subst(context, node.name) if node.name is not None else executable_name
    command = [str(executable), *(subst(context, a) for a in node.arguments), "--ros-args"]
    command += [subst(context, a) for a in node.ros_arguments]
    command += ["-r", f"__node:={name}"]
    if node.namespace is not None:
        command += ["-r", f"__ns:=/{subst(context, node.namespace).lstrip('/')}"]
    parameter_files = []
    for parameters in node.parameters:
        if isinstance(parameters, dict):
            path = Path(tmp_dir) / f"{index}_{name}_params.yaml"
            values = {
                k: v if isinstance(v, (bool, int, float, str)) else _typed(subst(context, v))
                for k, v in parameters.items()
            }
            path.write_text(yaml.safe_dump({"/**": {"ros__parameters": values}}))
        else:
            path = Path(subst(context, parameters))
            if not path.is_file():
                raise LaunchError(f"parameter file of node '{name}' not found: {path}")
        parameter_files.append(str(path))
        command += ["--params-file", str(path)]
    for source, target in node.remappings:
        command += ["-r", f"{subst(context, source)}:={subst(context, target)}"]
    if _is_python_script(executable):
        command.insert(0, sys.executable)
    return NodeProcess(
        name=name, command=command, executable=str(executable), parameter_files=parameter_files
    )


def _typed(text: str):
    """Launch configurations are strings; parameters get the YAML type of their text, as in launch_ros."""
    return yaml.safe_load(text) if text != "" else ""


def _is_python_script(path: Path) -> bool:
    with open(path, "rb") as f:
        first = f.readline()
    return first.startswith(b"#!") and b"python" in first


def run(nodes, duration_s: float | None = None, env=None, stop_when=None, on_started=None) -> int:
    """Start all nodes, stream their output prefixed by name, stop them all (SIGINT) when one fails,
    on Ctrl-C or SIGTERM, after ``duration_s``, or once ``stop_when()`` is true (polled at 10 Hz).
    ``on_started({name: pid})`` is called once every node is started (benchmarks watch the processes).
    Returns 0 when every node ended cleanly."""
    env = ros_environment(env)
    processes = []
    for node in nodes:
        process = subprocess.Popen(
            node.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        threading.Thread(target=_stream, args=(node.name, process.stdout), daemon=True).start()
        processes.append((node, process))
        print(f"[launch] started {node.name} (pid {process.pid})", flush=True)
    if on_started is not None:
        on_started({node.name: process.pid for node, process in processes})

    deadline = None if duration_s is None else time.monotonic() + duration_s
    failed = []
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        while True:
            failed = [(n, p.returncode) for n, p in processes if p.poll() not in (None, 0)]
            if failed or all(p.poll() is not None for _, p in processes):
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if stop_when is not None and stop_when():
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
    for _, process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for node, process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            print(f"[launch] {node.name} did not stop on SIGINT; killing it", flush=True)
            process.kill()
            process.wait()
    for node, code in failed:
        print(f"[launch] {node.name} exited with code {code}", flush=True)
    return 1 if failed else 0


def _raise_keyboard_interrupt(signum, frame):
    """SIGTERM (a supervisor, a test, systemd) stops the nodes the same way Ctrl-C does."""
    raise KeyboardInterrupt


def _stream(name, stream):
    for line in stream:
        print(f"[{name}] {line}", end="", flush=True)


def parse_launch_arguments(items) -> dict:
    """``name:=value`` pairs, as ``ros2 launch`` takes them."""
    arguments = {}
    for item in items:
        if ":=" not in item:
            raise LaunchError(f"launch argument '{item}' is not of the form name:=value")
        name, value = item.split(":=", 1)
        arguments[name] = value
    return arguments
