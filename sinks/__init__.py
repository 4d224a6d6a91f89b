"""Writers to the outside: ClickHouse, and later MQTT screens and webhooks."""
