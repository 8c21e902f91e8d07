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

# Measurement frames from the sampler to the encoder: every frame is to become a latent code, and a
# frame is a few hundred bytes, so reliable with a deep queue (1.3 s at 74 frames/s): a subscriber
# that a busy CPU stalls catches up instead of losing frames. Best-effort subscribers still match.
FRAMES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)

# The sampler's scene input: best effort (camera drivers publish so) but a deeper queue than
# SENSOR_DATA's 5, so scenes that arrive while the sampler is stalled wait instead of being replaced.
SCENE_INPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=30, reliability=ReliabilityPolicy.BEST_EFFORT)

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
