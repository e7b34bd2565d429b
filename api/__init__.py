"""The Face's management API: REST resources over accounts, rotator and stats."""
