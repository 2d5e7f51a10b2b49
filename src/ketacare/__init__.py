"""KetaCare: a ketamine pain-therapy programme, end to end, that turns every treatment into evidence.

Medical content is decision support for licensed clinicians; it never replaces their judgement.
"""

__version__ = "0.1.0"
