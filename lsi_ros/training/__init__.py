"""Training and its data: generated (latent, image) pairs, learned patterns + encoder (ROS-free)."""
