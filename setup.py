from glob import glob

from setuptools import find_packages, setup

package_name = "lapo_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    python_requires=">=3.10",
    install_requires=["setuptools", "numpy", "h5py", "opencv-python-headless", "PyYAML", "tqdm"],
    extras_require={
        "test": ["pytest", "pytest-xdist", "hypothesis"],
        # the ALOHA bimanual sim (lapo_ros.sim.aloha, aloha_sim_node); renders with EGL or
        # OSMesa (Debian: libegl1 + libgl1-mesa-dri, or libosmesa6). dm-control 1.0.41 is the
        # newest that accepts gym-aloha's mujoco < 3.9 (it needs mujoco >= 3.8.1).
        "aloha": ["gym-aloha>=0.1.5,<0.2", "mujoco>=3.8.1,<3.9", "dm-control==1.0.41"],
    },
    zip_safe=True,
    maintainer="lapo_ros maintainers",
    maintainer_email="maintainers@lapo-ros.invalid",
    description="Multimodal LAPO offline RL from ros2 bags to a policy node on the arm.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = lapo_ros.robot.node:main",
            "sim_node = lapo_ros.sim.node:main",
            "aloha_sim_node = lapo_ros.sim.aloha.node:main",
            "bag_to_hdf5 = lapo_ros.bags.convert:main",
            "lapo_hdf5 = lapo_ros.dataset.inspect:main",
        ],
    },
)
