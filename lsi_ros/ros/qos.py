"""QoS profiles of the pipeline's topics, in one place so publishers and subscribers agree."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Measurement frames and scenes: newest wins, a late frame is worth less than a fresh one.
SENSOR_DATA = qos_profile_sensor_data

# Latent codes, decoded images, attributes: small and consumed by other machines; keep them all.
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

# A recorder keeps up with bursts rather than dropping: deep reliable queue.
RECORDING = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)

# The newest latent code only: a decoder slower than the frame rate shows the present, not a backlog.
LATEST = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)

# Pattern-set metadata: published once, late joiners (an encoder started after the driver) get it.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
