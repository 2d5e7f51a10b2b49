"""HL7 v2.x vital signs from bedside monitors: ORU^R01 over MLLP.

``codes`` maps observation identifiers (LOINC, IEEE 11073 MDC) and units to KetaCare's vital
kinds; ``parse`` turns one message into a ``sessions.device.DeviceBatch``; ``ack`` writes the
acknowledgement; ``mllp`` is the listener; ``monitor`` is a simulated bedside monitor.
"""
