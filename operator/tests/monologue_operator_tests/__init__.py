"""Tests of the monologue operator (a package so that its modules get unique names:
under pytest's importlib mode a module path starting with operator/ would shadow the
stdlib module `operator`)."""
