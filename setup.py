"""ament_python package that is also a plain pip package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'trpo_ros'


def data_tree(folder: str) -> list[tuple[str, list[str]]]:
    """List (install dir, files) pairs that mirror `folder` under share/trpo_ros."""
    pairs: dict[str, list[str]] = {}
    for path in glob(f'{folder}/**/*', recursive=True):
        if '__pycache__' in path or not _is_file(path):
            continue
        parent = path.rsplit('/', 1)[0]
        pairs.setdefault(f'share/{PACKAGE}/{parent}', []).append(path)
    return sorted(pairs.items())


def _is_file(path: str) -> bool:
    import os

    return os.path.isfile(path)


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['tests', 'tests.*', 'bench']),
    package_data={PACKAGE: ['py.typed']},
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        *data_tree('launch'),
        *data_tree('config'),
        *data_tree('sim'),
    ],
    python_requires='>=3.10,<3.13',
    install_requires=[
        'numpy>=1.24,<3',
        'torch>=2.2,<=2.13.0',
        'gymnasium>=1.0,<1.5',
        'pybullet>=3.2.6,<3.3',
        'pybullet-envs-gymnasium>=0.5,<0.7',  # HopperBulletEnv-v0 and the other benchmark ids
        'onnx>=1.16,<1.24',
        'onnxruntime>=1.18,<1.33',
        'onnxscript>=0.3,<0.8',
        'pyyaml>=6,<7',
        'tqdm>=4.60,<5',
        'matplotlib>=3.7,<3.12',
        'tensorboard>=2.14,<2.22',
        'imageio>=2.30,<3',
        'pillow>=10,<14',
    ],
    extras_require={
        # Users on a ROS 2 install get rclpy and the messages from their distro instead.
        'ros': [
            'ros-kilted-rclpy>=9,<10',
            'ros-kilted-rmw-fastrtps-cpp>=9,<10',
            'ros-kilted-std-msgs>=5,<6',
            'ros-kilted-sensor-msgs>=5,<6',
            'ros-kilted-geometry-msgs>=5,<6',
            'ros-kilted-visualization-msgs>=5,<6',
            'ros-kilted-diagnostic-msgs>=5,<6',
            'ros-kilted-std-srvs>=5,<6',
            'ros-kilted-lifecycle-msgs>=2,<3',
        ],
        'ray': ['ray>=2.9,<3'],
        'test': ['pytest>=8,<10', 'ruff>=0.6,<0.18', 'colcon-common-extensions>=0.3,<0.4'],
        'bench': ['sb3-contrib>=2.3,<2.10'],
    },
    zip_safe=True,
    maintainer='trpo_ros maintainers',
    maintainer_email='trpo_ros@example.com',
    description='Train robot policies with TRPO in PyBullet, export to ONNX, serve on ROS 2.',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            'trpo-ros = trpo_ros.cli:main',
            'train_node = trpo_ros.nodes.train_node:main',
            'inference_node = trpo_ros.nodes.inference_node:main',
            'sim_node = trpo_ros.nodes.sim_node:main',
        ],
    },
)
