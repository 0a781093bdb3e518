"""Thin rclpy adapters: message in -> numpy -> core/runtime -> numpy -> message out."""
