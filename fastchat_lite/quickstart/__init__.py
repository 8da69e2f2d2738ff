"""The quickstart recipe: bundled data -> clean -> tiny model -> train -> serve, by stage command.

Nothing in the core imports it; ``fastchat-lite quickstart`` reaches it through the CLI table.
"""
