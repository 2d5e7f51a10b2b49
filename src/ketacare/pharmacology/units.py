"""Unit conversions, in one place.

The engine works internally in minutes, litres, milligrams and mg/L; everything a
caller sees is named with its unit (``conc_ng_per_ml``, ``t_min``).
"""

NG_PER_ML_PER_MG_PER_L = 1000.0
MIN_PER_H = 60.0
S_PER_MIN = 60.0
KETAMINE_MW_G_PER_MOL = 237.7
"""Ketamine base (facts file, unit conventions)."""


def mg_per_l_to_ng_per_ml(conc_mg_per_l: float) -> float:
    return conc_mg_per_l * NG_PER_ML_PER_MG_PER_L


def ng_per_ml_to_mg_per_l(conc_ng_per_ml: float) -> float:
    return conc_ng_per_ml / NG_PER_ML_PER_MG_PER_L


def umol_per_l_to_ng_per_ml(conc_umol_per_l: float) -> float:
    """Racemic ketamine base; 1 umol/L = 237.7 ng/mL."""
    return conc_umol_per_l * KETAMINE_MW_G_PER_MOL


def rate_mg_per_kg_h_to_mg_per_min(rate_mg_per_kg_h: float, weight_kg: float) -> float:
    return rate_mg_per_kg_h * weight_kg / MIN_PER_H
