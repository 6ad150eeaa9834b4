"""Networks, normalisation and the deployable policy module that export traces."""
