"""The evidence registry: cohort statistics, the registry report and the de-identified export."""
