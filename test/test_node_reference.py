"""docs/nodes.md is generated from the nodes' declarations: the page is current, and each node,
started for real, has exactly the topics and services its TOPICS declare."""

from pathlib import Path

import pytest
from rclpy.parameter import Parameter

from lsi_ros.ros import reference

PAGE = Path(__file__).resolve().parents[1] / "docs" / "nodes.md"

# How each node is started here (fast settings; what they publish does not depend on them) and the
# declared interfaces a node has only in another mode.
STARTS = {
    "dmd_driver": ({"framing": True}, set()),
    "face_locator": ({}, set()),
    "latent_classifier": ({}, set()),
    "latent_decoder": ({"generator": "dcgan", "threads": 1}, set()),
    "latent_encoder": ({"threads": 1}, {"attributes"}),  # task mode only
    "latent_monitor": ({}, set()),
    "latent_source": ({}, set()),
    "photodiode_sampler": ({"framing": True}, set()),
    "scene_source": ({"source": "folder", "path": "/nonexistent"}, set()),
    "web_view": ({"port": 0}, set()),
}
# Interfaces every node has from rclpy itself (parameters, logging, lifecycle state machine).
STANDARD = ("/rosout", "/parameter_events", "/transition_event")
STANDARD_SERVICE_TYPES = ("rcl_interfaces/", "type_description_interfaces/", "lifecycle_msgs/")


def test_the_page_is_current():
    assert PAGE.read_text() == reference.render(), (
        "docs/nodes.md is out of date: python -m lsi_ros.ros.reference docs/nodes.md"
    )


def test_every_node_module_is_on_the_page():
    names = {module.__name__.rsplit(".", 1)[1] for module in reference.node_modules()}
    assert names == set(STARTS) | {"bag_recorder"}  # bag_recorder's topics are its parameter


def _type_name(cls) -> str:
    return f"{cls.__module__.split('.')[0]}/{cls.__module__.split('.')[1].strip('_')}/{cls.__name__}"


@pytest.mark.parametrize("name", sorted(STARTS))
def test_a_running_node_has_the_declared_topics(name, ros_context):
    module = next(m for m in reference.node_modules() if m.__name__.endswith(f".{name}"))
    overrides, other_mode = STARTS[name]
    node_class = next(
        value
        for value in vars(module).values()
        if isinstance(value, type) and value.__module__ == module.__name__ and hasattr(value, "get_name")
    )
    node = node_class(
        context=ros_context, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()]
    )
    try:
        actual = {("pub", p.topic_name, _type_name(p.msg_type)) for p in node.publishers}
        actual |= {("sub", s.topic_name, _type_name(s.msg_type)) for s in node.subscriptions}
        actual |= {
            ("srv", node.resolve_service_name(s.srv_name), _type_name(s.srv_type)) for s in node.services
        }
        actual = {
            (kind, topic, type_)
            for kind, topic, type_ in actual
            if not topic.endswith(STANDARD) and not type_.startswith(STANDARD_SERVICE_TYPES)
        }

        def resolve(topic):
            if topic.kind == "srv":
                return node.resolve_service_name(topic.name)
            return node.resolve_topic_name(topic.name)

        declared = {(t.kind, resolve(t), t.type) for t in module.TOPICS if t.name not in other_mode}
        assert actual == declared
    finally:
        node.destroy_node()
