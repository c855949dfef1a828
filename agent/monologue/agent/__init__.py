"""The data plane: spaces, memory, agents, and the monologue CLI."""
