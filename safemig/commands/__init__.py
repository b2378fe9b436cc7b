"""Typer command modules: each parses its arguments, calls the library, renders the result.

One module per area (``migrate``, ``lint``, ``backup``, ``deploy``), each exposing
``register(app)``. They import heavy libraries (psycopg, boto3, sqlglot) only inside the
command functions, so ``safemig lint`` never pays for boto3 or psycopg.
"""
