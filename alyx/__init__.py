"""Alyx: a portable Backend-as-a-Service in Python."""

__version__ = "0.1.0"
