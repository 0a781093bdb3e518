"""The robot contract (numpy only): what every layer above agrees on about a robot."""

from trpo_ros.robot.command_filter import CommandFilter, FilterResult

__all__ = ['CommandFilter', 'FilterResult']
