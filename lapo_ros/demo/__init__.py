"""The closed-loop demo: scripted demonstrations as ros2 bags, training, sim + policy node."""
