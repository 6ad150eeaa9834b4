"""Shared by every stage, ROS- and torch-free: camera images, joint names, the policy file
contract, atomic files.
"""
