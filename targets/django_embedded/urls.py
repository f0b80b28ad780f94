"""URL configuration of the servecap Django project (``ROOT_URLCONF``)."""

from __future__ import annotations

from django.urls import path

from targets.django_embedded import views

urlpatterns = [
    path("healthz", views.healthz),
    path("v1/info", views.info),
    path("v1/predict", views.predict),
    path("metrics", views.metrics),
]

handler400 = views.bad_request
handler403 = views.forbidden
handler404 = views.not_found
handler500 = views.server_error
