"""
Serve an exported policy: inference_node, plus the PyBullet sim_node with `sim:=true`.

ros2 launch trpo_ros deploy.launch.py model:=/path/policy.onnx
ros2 launch trpo_ros deploy.launch.py model:=/path/policy.onnx sim:=true
ros2 launch trpo_ros deploy.launch.py model:=/path/policy.onnx sim:=true sim_goals:=topic

With `sim:=true` the simulated robot is the one the model was trained on (the model carries its
robot/task YAML and URDF). `sim_goals:=random` (default): the sim draws a goal per episode and
publishes it on the goal topic; `sim_goals:=topic`: the sim follows goals published by you
(`ros2 topic pub`, rviz2's Publish Point with goal_topic:=/clicked_point) and never resets.
Without `sim:=true` inference_node starts in standby (the robot gets the hold) until
`ros2 service call /inference_node/activate_policy std_srvs/srv/Trigger`; the sim asks for
`active` itself.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    config_dir = os.path.join(get_package_share_directory('trpo_ros'), 'config')
    default_params = os.path.join(config_dir, 'deploy.yaml')
    sim_overrides = os.path.join(config_dir, 'deploy_sim.yaml')
    model = LaunchConfiguration('model')
    params_file = LaunchConfiguration('params_file')
    command_topic = LaunchConfiguration('command_topic')
    goal_topic = LaunchConfiguration('goal_topic')
    follow = PythonExpression(["'", LaunchConfiguration('sim_goals'), "' == 'topic'"])
    simulated = PythonExpression(["'", LaunchConfiguration('sim'), "'.lower() == 'true'"])
    # With sim:=true deploy_sim.yaml's overrides follow params_file; else params_file again.
    sim_params = PythonExpression(["'", sim_overrides, "' if ", simulated, " else '",
                                   params_file, "'"])
    start_mode = PythonExpression(["'", LaunchConfiguration('start_mode'), "' or ('active' if ",
                                   simulated, " else 'standby')"])
    return LaunchDescription([
        DeclareLaunchArgument('model', description='exported policy (.onnx) to serve'),
        DeclareLaunchArgument('sim', default_value='false',
                              description='also start the PyBullet sim_node'),
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='node parameters (YAML)'),
        DeclareLaunchArgument('command_topic',
                              default_value='/forward_position_controller/commands',
                              description='Float64MultiArray command topic'),
        DeclareLaunchArgument('goal_topic', default_value='/trpo/goal',
                              description='PointStamped goal topic (/clicked_point: rviz2)'),
        DeclareLaunchArgument('start_mode', default_value='',
                              choices=['', 'standby', 'active', 'hold'],
                              description="inference_node's first mode ('': active with "
                                          'sim:=true, else standby)'),
        DeclareLaunchArgument('sim_goals', default_value='random',
                              choices=['random', 'topic'],
                              description='sim:=true: random goal per episode, or follow '
                                          'the goal topic (no episode resets)'),
        Node(
            package='trpo_ros',
            executable='inference_node',
            name='inference_node',
            output='screen',
            # sim:=true asks for the policy itself (a real robot starts in standby: call
            # ~/activate_policy).
            parameters=[params_file, sim_params,
                        {'model_path': model, 'command_topic': command_topic,
                         'goal_topic': goal_topic, 'start_mode': start_mode}],
        ),
        Node(
            package='trpo_ros',
            executable='sim_node',
            name='sim_node',
            output='screen',
            parameters=[params_file, {'command_topic': command_topic, 'model_path': model,
                                      'goal_topic': goal_topic,
                                      'follow_goal_topic': follow,
                                      'episode_steps': PythonExpression([
                                          '0 if ', follow, ' else -1'])}],
            condition=IfCondition(LaunchConfiguration('sim')),
        ),
    ])
