"""Small helpers every monologue component shares."""
