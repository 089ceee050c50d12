// Kafka: placeholder until its implementation lands.
