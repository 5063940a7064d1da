"""The review page's cards: one module per suggestion kind (dashboard/cards/<kind>.py),
saying what its card shows and what each decision on it does; dashboard/cards/base.py
holds what cards share and dashboard/cards/registry.py finds a kind's card."""
