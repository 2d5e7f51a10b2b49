"""DEA registration numbers and NPIs: the format and check-digit rules, with known-valid numbers
from the sources cited in knowledge/data/prescribing.toml and numbers that must fail."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ketacare.prescribing.identifiers import check_dea, dea_check_digit, last_name, npi_check_digit, npi_error


@pytest.mark.parametrize(
    ("number", "name"),
    [
        ("AP5836727", "Ann Parker"),  # takerx.com worked example: 15 + 32 = 47 -> 7
        ("AB1234563", "Bo Brown MD"),  # 1+3+5 + 2*(2+4+6) = 33 -> 3
        ("BJ6125341", "Jones, Kim"),  # 6+2+3 + 2*(1+5+4) = 31 -> 1
        ("MR1234563", "Pat Rivera NP"),  # M: mid-level practitioner
        ("ap5836727", "Ann Parker"),  # typed in lower case
    ],
)
def test_known_valid_dea_numbers(number: str, name: str) -> None:
    result = check_dea(number, name)
    assert result.ok and result.error is None, result
    assert result.name_letter_matches is True


def test_business_address_nine_is_valid_without_a_name() -> None:
    result = check_dea("F91234563", "Anyone")  # Wikipedia's example for a business address
    assert result.ok and result.name_letter_matches is None


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("AP5836720", "check digit"),
        ("AB1234560", "check digit"),
        ("AB1234564", "check digit"),
        ("XB1234563", "registrant type"),  # X is not a prescriber's registration of its own
        ("PB1234563", "registrant type"),  # P: manufacturer/distributor
        ("A1234567", "two letters and seven digits"),
        ("AB123456", "two letters and seven digits"),
        ("AB12345678", "two letters and seven digits"),
        ("AB12345X3", "two letters and seven digits"),
        ("", "two letters and seven digits"),
    ],
)
def test_invalid_dea_numbers_are_refused_with_the_reason(number: str, why: str) -> None:
    result = check_dea(number, "Bo Brown")
    assert not result.ok
    assert result.error is not None and why.split()[0] in result.error.lower()


def test_second_letter_not_the_last_name_is_flagged() -> None:
    result = check_dea("AB1234563", "Dana Okafor MD")
    assert result.ok and result.name_letter_matches is False


@given(st.text(alphabet="0123456789", min_size=6, max_size=6), st.sampled_from("ABFGM"))
def test_any_six_digits_with_the_computed_check_digit_pass_and_others_fail(six: str, first: str) -> None:
    digit = dea_check_digit(six)
    d = [int(c) for c in six]
    assert digit == (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10
    assert check_dea(f"{first}S{six}{digit}", "Sam Smith").ok
    assert not check_dea(f"{first}S{six}{(digit + 1) % 10}", "Sam Smith").ok


@pytest.mark.parametrize("npi", ["1234567893", "1558598797"])
def test_known_valid_npis(npi: str) -> None:
    # 1234567893: the CMS check-digit document's example; 1558598797 a published worked example.
    assert npi_error(npi) is None


def test_the_cms_example_check_digit_is_three() -> None:
    assert npi_check_digit("123456789") == 3


@pytest.mark.parametrize(
    ("npi", "why"),
    [
        ("1234567890", "check digit"),
        ("1234567894", "check digit"),
        ("3234567893", "begins with"),
        ("0234567893", "begins with"),
        ("123456789", "ten digits"),
        ("12345678901", "ten digits"),
        ("12345678a3", "ten digits"),
    ],
)
def test_invalid_npis(npi: str, why: str) -> None:
    error = npi_error(npi)
    assert error is not None and why in error


@given(st.text(alphabet="0123456789", min_size=8, max_size=8), st.sampled_from("12"))
def test_npi_check_digit_is_luhn_with_the_80840_prefix(eight: str, first: str) -> None:
    nine = first + eight
    digit = npi_check_digit(nine)
    full = "80840" + nine + str(digit)
    total = 0
    for i, c in enumerate(reversed(full)):  # plain Luhn over the 15-digit card issuer number
        n = int(c) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    assert total % 10 == 0
    assert npi_error(nine + str(digit)) is None
    assert npi_error(nine + str((digit + 1) % 10)) is not None


@pytest.mark.parametrize(
    ("full", "last"),
    [
        ("Dana Okafor MD", "Okafor"),
        ("Okafor, Dana", "Okafor"),
        ("Pat Rivera NP", "Rivera"),
        ("Rivera, PA-C", "Rivera"),
    ],
)
def test_last_name(full: str, last: str) -> None:
    assert last_name(full) == last
