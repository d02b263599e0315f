"""A tiny demo shop for the local stack. Never deployed."""
