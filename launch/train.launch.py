"""
Train a policy with TRPO as a ROS 2 node; `rviz:=true` adds the live preview in rviz2.

    ros2 launch trpo_ros train.launch.py total_steps:=200000 run_dir:=runs/kuka
    ros2 launch trpo_ros train.launch.py resume:=runs/kuka total_steps:=400000 rviz:=true

Launch arguments left at their default `''` (a YAML empty string) mean "not set": train.yaml,
config_file and the TRPOConfig defaults decide.
With `rviz:=true`, robot_state_publisher gets the URDF of the training env (rooted at `world`,
the same text train_node publishes on /robot_description) and turns /joint_states of the
preview into TF; rviz2 opens config/rviz/trpo.rviz (fixed frame `world`).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

ARGUMENTS = {
    'env': 'env id or robot/task YAML path (empty: env_id, default trpo_ros/KukaReach-v0)',
    'total_steps': 'environment steps to train for',
    'seed': 'seed for torch, numpy and the environments',
    'n_envs': 'parallel environments',
    'run_dir': 'run directory (empty: runs/<env>_<time>)',
    'resume': 'run directory to continue (empty: new run)',
}


def _rviz(context, *args, **kwargs):
    if LaunchConfiguration('rviz').perform(context).strip().lower() not in ('true', '1', 'yes'):
        return []
    from trpo_ros.nodes.launch_support import launch_robot_description

    share = get_package_share_directory('trpo_ros')
    rviz_config = os.path.join(share, 'config', 'rviz', 'trpo.rviz')
    description = launch_robot_description(
        env=LaunchConfiguration('env').perform(context),
        resume=LaunchConfiguration('resume').perform(context))
    return [
        Node(
            package='robot_state_publisher',
            executable='robot_state_publisher',
            name='robot_state_publisher',
            output='screen',
            parameters=[{'robot_description': ParameterValue(description, value_type=str)}],
        ),
        Node(
            package='rviz2',
            executable='rviz2',
            name='rviz2',
            arguments=['-d', rviz_config],
        ),
    ]


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory('trpo_ros'), 'config',
                                  'train.yaml')
    params_file = LaunchConfiguration('params_file')
    return LaunchDescription([
        DeclareLaunchArgument('params_file', default_value=default_params,
                              description='train_node parameters (YAML)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start robot_state_publisher and rviz2'),
        *[DeclareLaunchArgument(name, default_value="''", description=text)
          for name, text in ARGUMENTS.items()],
        Node(
            package='trpo_ros',
            executable='train_node',
            name='train_node',
            output='screen',
            parameters=[params_file, {
                'env': LaunchConfiguration('env'),
                'total_steps': LaunchConfiguration('total_steps'),
                'seed': LaunchConfiguration('seed'),
                'n_envs': LaunchConfiguration('n_envs'),
                'run_dir': LaunchConfiguration('run_dir'),
                'resume': LaunchConfiguration('resume'),
            }],
        ),
        OpaqueFunction(function=_rviz),
    ])
