"""BentoML serving the SavedModel through a new-style ``@bentoml.service`` (the ``bentoml``
kind); it runs in its own environment (targets/bentoml/setup.sh)."""
