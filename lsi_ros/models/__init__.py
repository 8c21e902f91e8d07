"""Models of the latent-space camera (ROS-free).

Kept import-free so that light modules (encoder, checkpoint) do not pull in OpenVINO; the frozen
generators live in ``lsi_ros.models.generators`` (``get_generator``, ``Generator``).
"""
