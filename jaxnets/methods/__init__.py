"""The five research methods, each a small package of pure functions plus a runner."""
