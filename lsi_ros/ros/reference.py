"""The node reference page (docs/nodes.md), rendered from the nodes' own declarations.

Each node module declares its parameters (``PARAMS``, the descriptors ``ros2 param describe``
shows) and its interfaces (``TOPICS``); the page is generated from them, and a test checks that
the page is current and that a running node has exactly the declared topics.

    python -m lsi_ros.ros.reference docs/nodes.md
"""

import importlib
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path

import lsi_ros.nodes

KINDS = {"sub": "subscribes", "pub": "publishes", "srv": "service"}
APPLIES_LABEL = {"startup": "read-only", "live": "live", "configure": "at configure"}
APPLIES_DOC = {
    "startup": "read when the node starts; `ros2 param set` is refused with the reason.",
    "live": "`ros2 param set` applies it at once (a value outside its range is refused).",
    "configure": "lifecycle nodes: read by the configure transition; settable while the node is "
    "unconfigured (`ros2 lifecycle set <node> cleanup` first).",
}


@dataclass(frozen=True)
class Topic:
    """One interface of a node: a topic it subscribes to or publishes, or a service it offers."""

    kind: str  # sub, pub, srv
    name: str
    type: str  # package/msg/Name or package/srv/Name
    description: str


def node_modules() -> list:
    """The node modules (one executable each), by name."""
    names = [m.name for m in pkgutil.iter_modules(lsi_ros.nodes.__path__) if not m.name.startswith("_")]
    return [importlib.import_module(f"lsi_ros.nodes.{name}") for name in sorted(names)]


def _value(value) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value}`"


def _type(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, list):
        return "string[]"
    return "string"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def render() -> str:
    lines = [
        "# Nodes",
        "",
        "Every executable of the package (`ros2 run lsi_ros <node>`), its topics and parameters. Topic",
        "names are relative: they follow the node's namespace and remappings. When a parameter takes a",
        "new value:",
        "",
    ]
    lines += [f"- **{APPLIES_LABEL[applies]}**: {text}" for applies, text in APPLIES_DOC.items()]
    lines += [
        "",
        "An integer is accepted for a double parameter (`-p rate_hz:=30`). `ros2 param describe` shows",
        "the same descriptions.",
        "",
        "Generated from the nodes' declarations by `python -m lsi_ros.ros.reference docs/nodes.md`.",
        "",
    ]
    for module in node_modules():
        name = module.__name__.rsplit(".", 1)[1]
        summary = module.__doc__.strip().split("\n\n")[0].split(": ", 1)[-1]
        lines += [f"## {name}", "", _cell(summary[:1].upper() + summary[1:]), ""]
        if any(param.name == "autostart" for param in module.PARAMS):
            lines += [
                f"A lifecycle node: `ros2 lifecycle set /{name} configure|activate|deactivate|cleanup`; with",
                "`autostart` it configures and activates itself.",
                "",
            ]
        topics = getattr(module, "TOPICS", ())
        if topics:
            lines += ["| | name | type | |", "|---|---|---|---|"]
            lines += [
                f"| {KINDS[t.kind]} | `{t.name}` | `{t.type}` | {_cell(t.description)} |" for t in topics
            ]
            lines.append("")
        lines += ["| parameter | type | default | applies | description |", "|---|---|---|---|---|"]
        for param in module.PARAMS:
            text = param.description
            if param.choices:
                text += f" One of: {', '.join(map(str, param.choices))}."
            if param.min is not None and param.max is not None:
                text += f" Range {param.min} to {param.max}."
            cells = (
                f"`{param.name}`",
                _type(param.default),
                _value(param.default),
                APPLIES_LABEL[param.applies],
            )
            lines.append(f"| {' | '.join(cells)} | {_cell(text)} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lsi_ros.ros.reference docs/nodes.md", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render())
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
