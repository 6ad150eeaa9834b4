"""The HDF5 episode dataset: file layout, episode sources, inspection, the transition sampler
(no torch).
"""
