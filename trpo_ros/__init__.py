"""trpo_ros: train robot policies with TRPO in PyBullet, export to ONNX, serve them on ROS 2."""

__version__ = '0.1.0'
