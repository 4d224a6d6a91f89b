"""Drivers and bridges from mall hardware (RFID, people counters, gates, tills) to Kafka."""
