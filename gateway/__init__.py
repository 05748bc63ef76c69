"""vmn-gateway: an SMPP 3.4 gateway for two-way SMS on virtual mobile numbers."""

__version__ = "0.1.0"
