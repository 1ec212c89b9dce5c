"""Turning files into vectors: scan, hash, decode in workers, encode in batches, store.

Depends on ``search`` only. Kept import-light: decode workers import this package.
"""
