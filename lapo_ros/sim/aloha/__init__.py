"""The ALOHA bimanual sim (gym-aloha's MuJoCo scenes) behind our observation format.

Needs the optional extra ``lapo_ros[aloha]`` (gym-aloha, mujoco, dm-control): ``scene`` loads
it; ``env`` wraps a scene (cameras, 14 joints, reward stage); ``kinematics`` solves gripper
poses into joint angles; ``experts`` plans scripted demonstrations of both scenes in joint
space; ``rollout`` runs and scores them; ``node`` serves the scene over ROS 2.
"""
