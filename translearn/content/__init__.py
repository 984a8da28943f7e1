"""Item content for models: per-domain item text, attributes and image paths (``ItemCatalog``) and the
frozen pretrained features computed from them, cached by content hash.

Importing this package is cheap: sentence-transformers is imported only when a text encoder is loaded.
"""

from translearn.content.catalog import DomainItems, ItemCatalog

__all__ = ["DomainItems", "ItemCatalog"]
