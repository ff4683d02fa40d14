"""apn training."""
