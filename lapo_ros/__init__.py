"""lapo_ros: multimodal LAPO (offline RL) from ros2 bags to a policy running on the arm."""

__version__ = "0.1.0"
