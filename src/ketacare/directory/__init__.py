"""The public front door: education, self-assessment, the vetted clinic directory,
consultation booking and cost estimates."""
