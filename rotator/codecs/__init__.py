"""Client dialects: one codec module per dialect, each turning its requests into the pivot
(Gemini's native GenerateContentRequest) and the pivot's answers back (see base.py)."""
