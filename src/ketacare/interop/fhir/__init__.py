"""FHIR R4 exchange: the clinic's record as standard resources.

``resources/`` holds one module per resource type (the mapping from KetaCare rows to FHIR JSON
and the read behind it); ``search`` parses and matches search parameters; ``service`` holds the
audited read, search and ``$everything`` use-cases; ``routes`` serves them under ``/fhir/R4``.

This package reads other features' tables read-only through the shared metadata (never their
model classes), as the registry extract does: an interface that exposes the whole record.
"""
