"""
Serve an exported policy: inference_node, plus the PyBullet sim_node with `sim:=true`.

ros2 launch trpo_ros deploy.launch.py model:=/path/policy.onnx
ros2 launch trpo_ros deploy.launch.py model:=/path/policy.onnx sim:=true
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('trpo_ros'), 'config',
                                  'deploy.yaml')
    model = LaunchConfiguration('model')
    params_file = LaunchConfiguration('params_file')
    command_topic = LaunchConfiguration('command_topic')
    return LaunchDescription([
        DeclareLaunchArgument('model', description='exported policy (.onnx) to serve'),
        DeclareLaunchArgument('sim', default_value='false',
                              description='also start the PyBullet sim_node'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='node parameters (YAML)'),
        DeclareLaunchArgument('command_topic',
                              default_value='/forward_position_controller/commands',
                              description='Float64MultiArray command topic'),
        DeclareLaunchArgument('env', default_value='trpo_ros/KukaReach-v0',
                              description='sim env id (sim:=true)'),
        Node(
            package='trpo_ros',
            executable='inference_node',
            name='inference_node',
            output='screen',
            parameters=[params_file, {'model_path': model, 'command_topic': command_topic}],
        ),
        Node(
            package='trpo_ros',
            executable='sim_node',
            name='sim_node',
            output='screen',
            parameters=[params_file, {'command_topic': command_topic,
                                      'env': LaunchConfiguration('env')}],
            condition=IfCondition(LaunchConfiguration('sim')),
        ),
    ])
