"""A local Alipay sandbox for development and tests. Never deployed."""
