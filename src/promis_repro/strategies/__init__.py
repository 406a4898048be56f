"""Prompt actions (generate, mutate, rewrite), test-time feedback, budgets and every compared strategy."""
