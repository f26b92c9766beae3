"""Signals the customers app sends for work the layers above it do (customers imports none of them)."""

from django.dispatch import Signal

# Sent (inside the transaction that changed them) when users stop or start being served.
# Arguments: customer (Customer), stopping (service-user ids to stop: their absences on MBN, subscription or
# channel removed), resumed (service-user ids served again: synced in full), ended (True when the customer's
# service ended: its calendar sources and MBN connection are set inactive).
service_users_changed = Signal()
