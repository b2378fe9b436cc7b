"""Built-in rules: one module per rule, named after its kebab-case id (see ``safemig.lint.registry``)."""
