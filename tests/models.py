"""Real models for tests besides the session's CIFAR-10 CNN (``tiny_model`` in conftest)."""

from __future__ import annotations

from pathlib import Path


def gray_classifier(folder: Path, classes: int = 5) -> Path:
    """A small real image classifier of another input: 64x64x1 uint8 -> ``scores``; exported
    as a SavedModel (serving signature ``pixels`` -> ``scores``) without servecap metadata."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(1)
    inputs = keras.Input(shape=(64, 64, 1), dtype="uint8", name="pixels")
    x = keras.layers.Rescaling(1.0 / 255.0)(keras.ops.cast(inputs, "float32"))
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D(4)(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="scores")(x)
    model = keras.Model(inputs, outputs)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=lambda pixels: {"scores": model(pixels, training=False)},
        input_signature=[tf.TensorSpec([None, 64, 64, 1], tf.uint8, name="pixels")],
    )
    path = folder / "gray" / "1"
    archive.write_out(str(path))
    return path
