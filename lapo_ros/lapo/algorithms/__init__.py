"""Offline agents: the shared base, LAPO (``MultimodalLatent``), behaviour cloning, their
configs and checkpoint file.
"""
