"""The node agent's tier backends: where a node keeps payload bytes (RAM, disk; more later)."""
