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

# Measurement frames as the sampler sends them: every frame is to become a latent code and a frame
# is a few hundred bytes, so reliable and 100 deep (1.3 s at 74 frames/s). Reliable or best-effort
# subscribers both match.
FRAMES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)

# What the encoder (frames) and the sampler (scenes) take in: best effort, so any publisher matches
# (a bag, a camera driver, a sampler of your own), but deeper than SENSOR_DATA's 5, so input that
# arrives while a busy CPU stalls the node waits instead of being replaced.
FRAMES_IN = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
SCENES_IN = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)

# Decoded images, registrations, face locations: consumed by other machines; keep them all.
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

# Latent codes and attributes, one per frame and a few KB each: reliable only within the writer's
# history, so 100 deep (0.7 s at 148 frames/s). A recorder, classifier or observer that a busy CPU
# holds back for longer than 10 frames would otherwise lose codes the camera made.
CODES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)

# A recorder keeps up with bursts rather than dropping: deep reliable queue.
RECORDING = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)

# The newest latent code only: a decoder slower than the frame rate shows the present, not a backlog.
LATEST = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)

# Face locations: a localisation is published once and stands until the next one (with a still
# face, minutes), so a view, a monitor or RViz started after it still gets the last ones.
FACES = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# Pattern-set metadata: published once, late joiners (an encoder started after the driver) get it.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
