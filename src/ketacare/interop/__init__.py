"""Interoperability: HL7 v2 from bedside monitors (``hl7v2``) and FHIR R4 exchange (``fhir``)."""
