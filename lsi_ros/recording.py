"""Writing rosbag2 (MCAP) bags from serialized messages, for machines without rosbag2.

Messages are written as the CDR bytes that arrived (no re-serialisation), with the type
definitions and RIHS01 hashes ``ros2 bag`` writes, so ``ros2 bag play``/``info`` read the bags.
On a robot with ROS installed, use ``ros2 bag record`` instead.
"""

from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore


def typestore_with(message_folders) -> object:
    """The Kilted typestore plus the .msg definitions in the given folders ({pkg: folder})."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for package, folder in message_folders.items():
        for path in sorted(Path(folder).glob("*.msg")):
            types |= get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}")
    typestore.register(types)
    return typestore


class BagWriter:
    """One MCAP bag; ``write(topic, stamp_ns, cdr_bytes)`` for topics declared up front."""

    def __init__(self, path, topics: dict, typestore):
        self.path = Path(path)
        self.counts = dict.fromkeys(topics, 0)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=typestore)
            for topic, msgtype in topics.items()
        }

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], stamp_ns, data)
        self.counts[topic] += 1

    def close(self) -> None:
        self._writer.close()
