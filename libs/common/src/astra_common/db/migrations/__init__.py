"""Alembic script directory of the ASTRA database (a package so that wheels ship env.py)."""
