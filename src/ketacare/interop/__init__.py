"""Interoperability: HL7 v2 from bedside monitors (``hl7v2``); FHIR R4 exchange later."""
