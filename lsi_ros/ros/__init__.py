"""Thin ROS 2 glue shared by the nodes: message conversions, QoS, parameters, the node main loop.

Everything under ``lsi_ros.ros`` imports rclpy; the core library (optics, models, evaluation)
never does, so it can be used without ROS.
"""
