"""LitServe serving the SavedModel through a LitAPI (the ``litserve`` kind)."""
