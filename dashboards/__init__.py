"""Grafana dashboards for the ClickHouse tables, and their tooling."""
