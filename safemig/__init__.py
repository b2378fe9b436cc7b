"""safemig: a production-safety orchestrator for PostgreSQL schema migrations.

The package is a library first: every command is a plain function in a module that
returns values and raises :class:`safemig.errors.SafemigError`; ``safemig.cli`` only
parses arguments, calls those functions and renders their results.
"""

__version__ = "0.1.0"
