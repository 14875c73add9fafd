"""biaslab.data.metadata: sex and age normalised whatever the spelling; the rest reported."""

import numpy as np
import pandas as pd
import pytest

from biaslab.data.metadata import age_groups, normalise_age, normalise_metadata, normalise_sex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("M", "M"), ("m", "M"), ("Male", "M"), (" homme ", "M"), ("MAN", "M"),
     ("F", "F"), ("female", "F"), ("Femme", "F"), ("woman", "F"), ("W", "F")],
)
def test_sex_spellings(raw, expected):
    sex, issues = normalise_sex(pd.Series([raw]))
    assert sex.iloc[0] == expected and issues.empty


def test_sex_unparseable_is_reported_with_row_and_value_not_guessed():
    sex, issues = normalise_sex(pd.Series(["M", "x", None, "", "2"], index=[10, 11, 12, 13, 14]),
                                column="gender")
    assert sex.isna().tolist() == [False, True, True, True, True]
    assert issues[["table_row", "column", "value"]].values.tolist() == [
        [11, "gender", "x"], [14, "gender", "2"]]  # blanks are missing, not errors
    assert issues["reason"].str.contains("unrecognised sex").all()


@pytest.mark.parametrize(
    ("raw", "years"),
    [("57", 57), ("57.5", 57.5), ("057Y", 57), ("006M", 0.5), ("57 years", 57), ("1 year", 1),
     ("52W", 52 * 7 / 365.25), (" 40 ", 40)],
)
def test_age_spellings(raw, years):
    age, issues = normalise_age(pd.Series([raw]))
    assert age.iloc[0] == pytest.approx(years) and issues.empty


def test_age_unparseable_and_implausible_are_reported():
    age, issues = normalise_age(pd.Series(["abc", "413", "-3", "", "60"]))
    assert np.isnan(age.iloc[:4]).all() and age.iloc[4] == 60
    assert issues["table_row"].tolist() == [0, 1, 2]
    assert issues["reason"].tolist() == ["unparseable age",
                                         "implausible age (outside 0..120 years)",
                                         "implausible age (outside 0..120 years)"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("-5", "implausible"), ("-0.5", "implausible"), ("-5 years", "implausible"),
     ("121", "implausible"), ("130Y", "implausible"),
     ("abc", "unparseable"), ("5-6", "unparseable"), ("--5", "unparseable"),
     ("- 5", "unparseable"), ("57 yrs old", "unparseable")],
)
def test_age_a_number_out_of_range_is_implausible_text_is_unparseable(raw, reason):
    age, issues = normalise_age(pd.Series([raw], index=[7]), column="Patient Age")
    assert np.isnan(age.iloc[0])
    assert issues[["table_row", "column", "value"]].values.tolist() == [[7, "Patient Age", raw]]
    assert issues["reason"].iloc[0].startswith(f"{reason} age")


@pytest.mark.parametrize(("raw", "years"), [("+40", 40), ("0", 0), ("120", 120)])
def test_age_signed_and_boundary_values_are_kept(raw, years):
    age, issues = normalise_age(pd.Series([raw]))
    assert age.iloc[0] == years and issues.empty


def test_age_groups_whole_years():
    groups = age_groups(pd.Series([0, 39.9, 40, 59, 60, 80, 119, np.nan]), [40, 60, 80])
    assert groups.tolist()[:7] == ["<40", "<40", "40-59", "40-59", "60-79", "80+", "80+"]
    assert pd.isna(groups.iloc[7])


def test_age_groups_fractional_cuts():
    assert age_groups(pd.Series([10.0, 30.0]), [20.5]).tolist() == ["<20.5", "20.5+"]


def test_normalise_metadata_keeps_patient_and_omits_absent_columns():
    table = pd.DataFrame({"pid": ["7", " ", "9"], "gender": ["male", "F", "?"]})
    meta, issues = normalise_metadata(table, sex="gender", age="age", patient="pid",
                                      age_bins=[40])
    assert meta.columns.tolist() == ["patient_id", "sex"]  # no age column in the table
    assert meta["patient_id"].tolist()[0] == "7" and meta["patient_id"].isna().tolist() == [
        False, True, False]
    assert issues["value"].tolist() == ["?"]
