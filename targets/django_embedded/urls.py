"""URL configuration of the servecap Django project (``ROOT_URLCONF``)."""

from __future__ import annotations

from django.urls import path

from targets.django_embedded import views
from targets.protocols.servecap import HEALTH_PATH, INFO_PATH, PREDICT_PATH

urlpatterns = [
    path(HEALTH_PATH.lstrip("/"), views.healthz),
    path(INFO_PATH.lstrip("/"), views.info),
    path(PREDICT_PATH.lstrip("/"), views.predict),
    path("metrics", views.metrics),
]

handler400 = views.bad_request
handler403 = views.forbidden
handler404 = views.not_found
handler500 = views.server_error
