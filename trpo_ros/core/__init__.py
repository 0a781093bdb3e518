"""TRPO engine: networks, GAE, the trust-region step, rollouts, the trainer (no rclpy here)."""
