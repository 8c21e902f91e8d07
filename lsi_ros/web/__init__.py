"""The base station's browser view: a live page and web_video_server-style image endpoints (no ROS)."""
