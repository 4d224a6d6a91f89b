"""What several test modules share: helpers that are neither fixtures nor part of the runtime."""
