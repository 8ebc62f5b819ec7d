"""Links: how one group's log reaches the other devices (embedded relay, MQTT, NATS JetStream)."""
