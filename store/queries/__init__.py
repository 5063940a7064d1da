"""Reads across tables, one module per consumer (a dashboard page, a command).

The tables' own modules (store/catalog.py, store/matches.py, …) own their columns; a
query here joins them for one screen or one command and maps rows by column name.
Every function takes a connection the caller opened for one short unit of work
(store.db.Store.reading), so the dashboard never holds the store's lock.
"""
