"""Several proxies sharing the firm's limits and kill switch through PostgreSQL (docs/cluster.md)."""
