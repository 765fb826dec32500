"""Sinks: the MQTT uplink (edge role) and InfluxDB writers (ingest role)."""
