"""The embedded single-node Apache Kafka (KRaft) the app starts when FLIGHTS_BROKER is unset."""
