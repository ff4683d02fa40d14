"""apn cli."""
