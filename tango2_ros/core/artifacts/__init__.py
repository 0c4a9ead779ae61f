"""Model artifacts: signed, content-addressed bundles (manifest + files), the stores that hold them and the pull cache."""
