"""The /draw language: its options, grammar and validation, and the request it produces."""
