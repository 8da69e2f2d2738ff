"""``data generate``: self-instruct tasks, the Alpaca / BELLE recipe, from an API teacher."""
