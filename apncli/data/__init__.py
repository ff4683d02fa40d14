"""apn data."""
