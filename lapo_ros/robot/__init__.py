"""On the arm: the policy node, its parameters, the policy runtime, command safety, sensor
cache (torch only for .pt policies).
"""
