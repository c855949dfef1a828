"""The kopf operator for Space, Agent and ModelServer."""
