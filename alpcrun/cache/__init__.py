"""Shared data: the central cache, the node-local pull-through cache and their client."""
