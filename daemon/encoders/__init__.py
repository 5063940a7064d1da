"""Face encoders: an image in, its faces and their embeddings out.

`registry` is the one module that knows every encoder and picks a store's from settings.
"""
