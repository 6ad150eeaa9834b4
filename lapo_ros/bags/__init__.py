"""ros2 bags without ROS (rosbags): conversion config, reading, writing, time alignment, bag ->
HDF5.
"""
