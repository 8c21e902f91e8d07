"""Writing rosbag2 (MCAP) bags from serialized messages, for machines without rosbag2, and
recovering a bag whose recorder was killed.

Messages are written as the CDR bytes that arrived (no re-serialisation), with the type
definitions and RIHS01 hashes ``ros2 bag`` writes, so ``ros2 bag play``/``info`` read the bags.
On a robot with ROS installed, use ``ros2 bag record`` instead.

A recorder can die at any moment (kill -9, power loss), so a bag is a folder of MCAP files of at
most ``split_s`` seconds each, as ``ros2 bag record --max-bag-duration`` writes them.
``metadata.yaml`` is written when recording starts and again whenever a file is complete; the file
being written lives in a subfolder of its own and its messages reach the disk every ``flush_s``.
After a crash ``reindex`` (``lsi bag reindex``) rebuilds that file's index and footer from the
records on disk and adds it to ``metadata.yaml``, as ``ros2 bag reindex`` does.
"""

import shutil
import time
from pathlib import Path

import yaml
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

MCAP_MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x03, 0x04, 0x05, 0x06


class BagError(ValueError):
    """A bag folder that cannot be recovered (no metadata.yaml, unknown message types)."""


def typestore_with(message_folders) -> object:
    """The Kilted typestore plus the .msg definitions in the given folders ({pkg: folder})."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for package, folder in message_folders.items():
        for path in sorted(Path(folder).glob("*.msg")):
            types |= get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}")
    typestore.register(types)
    return typestore


def free_path(path) -> Path:
    """``path``, or when it exists already a sibling named after the time (``bag_20260101T120000``)."""
    path = Path(path)
    if not path.exists():
        return path
    stamped = path.with_name(f"{path.name}_{time.strftime('%Y%m%dT%H%M%S')}")
    index = 2
    while stamped.exists():
        stamped = path.with_name(f"{path.name}_{time.strftime('%Y%m%dT%H%M%S')}_{index}")
        index += 1
    return stamped


def _topic_entry(connection) -> dict:
    return {
        "topic_metadata": {
            "name": connection.topic,
            "type": connection.msgtype,
            "serialization_format": "cdr",
            "offered_qos_profiles": "",
            "type_description_hash": connection.digest,
        },
        "message_count": 0,
    }


def _empty_info(topic_entries: list) -> dict:
    return {
        "version": 9,
        "storage_identifier": "mcap",
        "relative_file_paths": [],
        "duration": {"nanoseconds": 0},
        "starting_time": {"nanoseconds_since_epoch": 0},
        "message_count": 0,
        "topics_with_message_count": topic_entries,
        "compression_format": "",
        "compression_mode": "",
        "files": [],
        "custom_data": None,
        "ros_distro": "rosbags",
    }


def _with_file(info: dict, file_info: dict) -> dict:
    """Bag metadata ``info`` with one more complete file (``file_info``: that file's own metadata)."""
    counts = {e["topic_metadata"]["name"]: e["message_count"] for e in file_info["topics_with_message_count"]}
    topics = [
        dict(e, message_count=e["message_count"] + counts.get(e["topic_metadata"]["name"], 0))
        for e in info["topics_with_message_count"]
    ]
    files = info["files"] + file_info["files"]
    spans = [
        (f["starting_time"]["nanoseconds_since_epoch"], f["duration"]["nanoseconds"])
        for f in files
        if f["message_count"]
    ]
    start = min((s for s, _ in spans), default=0)
    end = max((s + d for s, d in spans), default=0)
    return info | {
        "relative_file_paths": info["relative_file_paths"] + file_info["relative_file_paths"],
        "files": files,
        "message_count": info["message_count"] + file_info["message_count"],
        "topics_with_message_count": topics,
        "starting_time": {"nanoseconds_since_epoch": start},
        "duration": {"nanoseconds": end - start},
    }


def _write_metadata(folder: Path, info: dict) -> None:
    """Replace metadata.yaml in one step: a reader sees the old or the new one, never half."""
    tmp = folder / "metadata.yaml.tmp"
    tmp.write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    tmp.replace(folder / "metadata.yaml")


def _settle(writer_folder: Path, bag_folder: Path) -> dict:
    """Move a closed file's MCAP into the bag folder, drop its subfolder; returns its metadata."""
    info = yaml.safe_load((writer_folder / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    for name in info["relative_file_paths"]:
        (writer_folder / name).replace(bag_folder / name)
    shutil.rmtree(writer_folder)
    return info


class BagWriter:
    """One bag; ``write(topic, stamp_ns, cdr_bytes)`` for topics declared up front; ``flush()`` (also
    done by ``write`` every ``flush_s``) puts what was written on disk."""

    def __init__(self, path, topics: dict, typestore, split_s: float = 60.0, flush_s: float = 0.5):
        self.path = free_path(path)
        self.path.mkdir(parents=True)
        self.topics = topics
        self.typestore = typestore
        self.split_s = split_s
        self.flush_s = flush_s
        self.counts = dict.fromkeys(topics, 0)
        self._files = 0
        self._open_file()
        self._info = _empty_info([_topic_entry(c) for c in self._connections.values()])
        _write_metadata(self.path, self._info)

    def _open_file(self) -> None:
        self._writer = Writer(
            self.path / f"{self.path.name}_{self._files}", version=9, storage_plugin=StoragePlugin.MCAP
        )
        self._writer.open()
        self._connections = {
            topic: self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            for topic, msgtype in self.topics.items()
        }
        self._opened = self._flushed = time.monotonic()

    def _close_file(self) -> None:
        self._writer.close()
        self._info = _with_file(self._info, _settle(self._writer.path, self.path))
        _write_metadata(self.path, self._info)
        self._files += 1

    def write(self, topic: str, stamp_ns: int, data: bytes) -> None:
        now = time.monotonic()
        if now - self._opened >= self.split_s:
            self._close_file()
            self._open_file()
        self._writer.write(self._connections[topic], stamp_ns, data)
        self.counts[topic] += 1
        if now - self._flushed >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """End the open file's pending chunk and hand it to the operating system."""
        storage = self._writer.storage
        if storage.chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self._close_file()


def _records(data: bytes, start: int = 0):
    """(opcode, body) of the MCAP records in ``data`` from ``start``, stopping at a truncated one."""
    position = start
    while position + 9 <= len(data):
        length = int.from_bytes(data[position + 1 : position + 9], "little")
        end = position + 9 + length
        if end > len(data):
            return
        yield data[position], data[position + 9 : end]
        position = end


def _string(body: bytes, position: int) -> tuple[str, int]:
    length = int.from_bytes(body[position : position + 4], "little")
    return body[position + 4 : position + 4 + length].decode(), position + 4 + length


def mcap_messages(path) -> tuple[dict, list]:
    """Channels ``{id: (topic, type, definition)}`` and ``(channel, log_time, data)`` messages of an
    MCAP file read record by record: works on a file that ends anywhere (no summary, no footer)."""
    data = Path(path).read_bytes()
    if not data.startswith(MCAP_MAGIC):
        raise BagError(f"{path} is not an MCAP file")
    schemas, channels, messages = {}, {}, []

    def read(records):
        for op, body in records:
            if op == OP_SCHEMA:
                name, position = _string(body, 2)
                _, position = _string(body, position)
                definition, _ = _string(body, position)
                schemas[int.from_bytes(body[:2], "little")] = (name, definition)
            elif op == OP_CHANNEL:
                topic, _ = _string(body, 4)
                channels[int.from_bytes(body[:2], "little")] = (
                    topic,
                    *schemas[int.from_bytes(body[2:4], "little")],
                )
            elif op == OP_MESSAGE:
                messages.append(
                    (int.from_bytes(body[:2], "little"), int.from_bytes(body[6:14], "little"), body[22:])
                )
            elif op == OP_CHUNK:
                compression, position = _string(body, 28)
                if compression:
                    raise BagError(f"{path}: compressed chunks ({compression}) are not supported")
                read(_records(body[position + 8 :]))

    read(_records(data, len(MCAP_MAGIC)))
    return channels, messages


def _is_complete(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - len(MCAP_MAGIC)))
        return path.stat().st_size > 2 * len(MCAP_MAGIC) and file.read() == MCAP_MAGIC


def reindex(path) -> dict:
    """Rebuild the files of a bag its recorder left unfinished and its metadata.yaml; returns
    ``{file name: messages recovered}``. A complete bag is left as it is."""
    folder = Path(path)
    meta_path = folder / "metadata.yaml"
    if not meta_path.is_file():
        raise BagError(f"{folder} has no metadata.yaml: not a bag folder written by lsi_ros")
    info = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
    hashes = {
        e["topic_metadata"]["name"]: e["topic_metadata"]["type_description_hash"]
        for e in info["topics_with_message_count"]
    }
    listed = set(info["relative_file_paths"])
    unfinished = sorted(p for p in folder.glob("*/*.mcap") if p.parent.name != "recovered")
    unfinished += sorted(p for p in folder.glob("*.mcap") if p.name not in listed and not _is_complete(p))
    recovered = {}
    for source in unfinished:
        channels, messages = mcap_messages(source)
        writer = Writer(folder / "recovered" / source.stem, version=9, storage_plugin=StoragePlugin.MCAP)
        writer.open()
        connections = {}
        for channel, (topic, msgtype, definition) in channels.items():
            if topic not in hashes:
                raise BagError(f"{source}: topic {topic} is not in {meta_path}")
            connections[channel] = writer.add_connection(
                topic, msgtype, msgdef=definition, rihs01=hashes[topic]
            )
        for channel, stamp_ns, data in messages:
            writer.write(connections[channel], stamp_ns, data)
        writer.close()
        source.unlink()
        if source.parent != folder:
            shutil.rmtree(source.parent)
        file_info = _settle(writer.path, folder)
        info = _with_file(info, file_info)
        recovered[file_info["relative_file_paths"][0]] = len(messages)
    shutil.rmtree(folder / "recovered", ignore_errors=True)
    _write_metadata(folder, info)
    return recovered
