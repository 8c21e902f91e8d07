"""diagnostic_msgs helpers: every lsi_ros node reports its health on /diagnostics."""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK = DiagnosticStatus.OK
WARN = DiagnosticStatus.WARN
ERROR = DiagnosticStatus.ERROR


def status_name(node) -> str:
    """A node's name on /diagnostics: with its namespace (``robot1/latent_encoder``), so that two
    cameras on one robot do not report under one name; a node in the root namespace keeps its bare name."""
    return node.get_fully_qualified_name().lstrip("/")


class DiagnosticsReporter:
    """Publishes one DiagnosticStatus for its node: a level, a message and key/value counters."""

    def __init__(self, node, hardware_id: str = ""):
        self._node = node
        self._name = status_name(node)
        self._hardware_id = hardware_id
        self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def publish(self, level: int, message: str, values: dict) -> None:
        status = DiagnosticStatus(
            level=level,
            name=self._name,
            message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)
