"""LinkedIn Learning provider: learning-asset catalog and learner activity reports, through
LinkedIn's Learning APIs (OAuth2 client credentials). Built only on the public ``hostspec``
surface, alongside Coursera."""

__version__ = "0.1.0"
