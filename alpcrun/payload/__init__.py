"""The tiered payload store: the catalog (control plane), its leases and node placement.

Large per-task data travels as payloads: tasks carry references, and bytes go from the tier
that holds them to the task that reads them. This package's sans-I/O core is importable
without grpc.
"""
