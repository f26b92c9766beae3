"""The customer portal's URLs (Norwegian paths: customers read them)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from portal import views

app_name = "portal"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("logg-inn/", views.LoginView.as_view(), name="login"),
    path("logg-ut/", auth_views.LogoutView.as_view(), name="logout"),
    path("glemt-passord/", views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "glemt-passord/sendt/",
        auth_views.PasswordResetDoneView.as_view(template_name="portal/password_reset_done.html"),
        name="password_reset_done",
    ),
    path("passord/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path(
        "passord/ferdig/",
        auth_views.PasswordResetCompleteView.as_view(template_name="portal/password_reset_complete.html"),
        name="password_reset_complete",
    ),
    path("brukere/", views.users, name="users"),
    path("brukere/<int:pk>/", views.user_detail, name="user"),
    path("innstillinger/", views.settings_page, name="settings"),
    path("koder/", views.codes, name="codes"),
    path("abonnement/", views.subscription, name="subscription"),
    path("abonnement/si-opp/", views.terminate, name="terminate"),
    path("tilkoblinger/", views.connections, name="connections"),
    path("tilkoblinger/test/", views.connection_test, name="connection_test"),
    path("tilkoblinger/koble-fra/", views.connection_remove, name="connection_remove"),
    path("tilkoblinger/microsoft/", views.microsoft_connect, name="microsoft_connect"),
    path("tilkoblinger/microsoft/svar/", views.microsoft_callback, name="microsoft_callback"),
    path("tilkoblinger/microsoft/<int:pk>/gruppe/", views.microsoft_group, name="microsoft_group"),
    path("tilkoblinger/google/", views.google_connection, name="google_connection"),
    path("tilkoblinger/exchange/", views.exchange_connection, name="exchange_connection"),
    path("tilkoblinger/mbn/", views.mbn_connection, name="mbn_connection"),
    path("fakturaer/", views.invoices, name="invoices"),
    path("fakturaer/<int:pk>/pdf/", views.invoice_pdf, name="invoice_pdf"),
    path("fakturaer/<int:pk>/ehf/", views.invoice_ehf, name="invoice_ehf"),
    path("kreditnotaer/<int:pk>/pdf/", views.credit_note_pdf, name="credit_note_pdf"),
    path("kreditnotaer/<int:pk>/ehf/", views.credit_note_ehf, name="credit_note_ehf"),
]
