"""Webhook URLs (public: Graph calls them)."""

from django.urls import path

from sync import views

app_name = "sync"
urlpatterns = [
    path("graph/", views.graph_webhook, name="graph_webhook"),
    path("graph/lifecycle/", views.graph_lifecycle, name="graph_lifecycle"),
    path("google/", views.google_webhook, name="google_webhook"),
]
