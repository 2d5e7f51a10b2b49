"""Treat: supervised sessions - check-in, pre-checks, administration, live vitals and alarms,
adverse events, discharge and the signed session report."""
