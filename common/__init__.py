"""Helpers shared by the domain apps and below them all: nothing here imports customers, billing, sync or portal."""
