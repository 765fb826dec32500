"""Edge telemetry gateway: drivers -> pipelines -> durable buffer -> MQTT -> ingest -> InfluxDB."""

__version__ = "0.1.0"
