"""mallstream: one real-time stream for a mall's tills, RFID readers, people counters and car parks."""
