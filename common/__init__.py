"""Small helpers every app shares (the clock, secret masking and redaction, Rotator's error
types). Nothing here imports accounts, rotator or stats, so every app may import it."""
