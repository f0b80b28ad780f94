# Model-in-image variant: TARGET_IMAGE plus the exported SavedModel base at
# /models/cifar10_cnn (TF Serving layout <base>/<version>/saved_model.pb). Works on top of any
# servecap target image and on tensorflow/serving alike.
#
# Built by targets/docker/images.py:build_model_image from a throw-away context that holds
# only this file and `model/` (so the model can live anywhere on the host, and the repository
# is not sent to the engine). Compose then runs it with SERVECAP_MODEL_MOUNT=/models/host so the
# host bind mount does not hide the baked-in copy.
ARG TARGET_IMAGE
FROM ${TARGET_IMAGE}
LABEL io.servecap.image="model" \
      io.servecap.model-in-image="true"
COPY model/ /models/cifar10_cnn/
ENV SERVECAP_MODEL_PATH=/models/cifar10_cnn
