"""Containers for the targets: images, the compose entry point helpers, the image builder.

``docker-compose.yml`` at the repository root is the single definition of every target
container; this package holds what runs *inside* those containers (:mod:`.entrypoint`,
:mod:`.healthcheck`) and what builds the images (:mod:`.images`, ``*.Dockerfile``, the
``build_*.sh`` scripts). Nothing here imports TensorFlow or the Docker SDK at import time.
"""
