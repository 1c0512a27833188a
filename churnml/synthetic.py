"""Built-in synthetic bank-churn data: rows of the Kaggle S4E1 schema from a seeded generator.

A pure module (numpy and pandas). The same seed gives an identical frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.schema import DEFAULT_TARGET

_SURNAMES = np.array(
    [
        "Hsia", "T'ien", "Hs?", "Kao", "Maclean", "Ts'ui", "P'eng", "H?", "Hsueh", "Shih",
        "Ch'ang", "Ch'iu", "Mazzanti", "Tuan", "Fanucci", "Onyemauchechukwu", "Tien", "Smith",
        "Nwankwo", "Manna", "Okwudilichukwu", "Okwudiliolisa", "Hargrave", "Hill", "Onio",
        "Boni", "Mitchell", "Chu", "Bartlett", "Obinna", "Bellucci", "Genovese", "Y?an",
        "Lo", "Scott", "Walker", "Martin", "Brown", "Yeh", "Chiemezie",
    ],
    dtype=object,
)  # fmt: skip
_GEOGRAPHIES = np.array(["France", "Spain", "Germany"], dtype=object)
_GEOGRAPHY_P = (0.571, 0.219, 0.210)
_TENURE_P = np.array([0.030, 0.102, 0.109, 0.101, 0.106, 0.105, 0.096, 0.108, 0.106, 0.101, 0.036])
_PRODUCTS_P = np.array([0.4688, 0.5108, 0.0175, 0.0029])
_MAX_BALANCE = 250_898.09
_MIN_SALARY, _MAX_SALARY = 11.58, 199_992.48

# Churn model: log-odds contributions. Germany, women, inactive members, customers aged
# about 45-60 and holders of 3-4 products churn more; holders of 2 products churn less.
_INTERCEPT = -3.75
_PRODUCT_LOGIT = np.array([0.0, -2.9, 3.4, 4.2])
_LABEL_NOISE = 0.01


def generate_bank_churn(n_rows: int = 4000, *, seed: int = 0) -> pd.DataFrame:
    """Generate a raw frame of the Kaggle S4E1 bank-churn schema.

    The marginals follow the real training file (credit score 350-850, about 57 % France,
    56 % men, ages 18-92 centred near 37, 54 % zero balances, 1-2 products for 98 % of
    customers, ...). ``Exited`` comes from a logistic model with about 20 % churn, clearly higher
    for Germany, ages 45-60, inactive members and 3-4 products, and lower for 2 products,
    plus a little label noise, so models score well but not perfectly.

    Args:
        n_rows: Number of rows (at least 1).
        seed: Seed of the random generator; the same seed gives an identical frame.

    Returns:
        A frame with columns ``id, CustomerId, Surname, CreditScore, Geography, Gender, Age,
        Tenure, Balance, NumOfProducts, HasCrCard, IsActiveMember, EstimatedSalary, Exited``
        and the dtypes pandas reads from the real file.

    Raises:
        ValueError: ``n_rows`` is below 1.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = n_rows

    geography = rng.choice(3, size=n, p=_GEOGRAPHY_P)
    male = rng.random(n) < 0.564
    z = rng.standard_normal(n)
    age = np.clip(np.round(37.0 * np.exp(z * np.where(z > 0, 0.23, 0.20))), 18, 92)
    credit = np.clip(np.round(rng.normal(657.0, 82.0, n)), 350, 850).astype(np.int64)
    tenure = rng.choice(11, size=n, p=_TENURE_P / _TENURE_P.sum())
    has_balance = rng.random(n) >= 0.543
    balance = np.where(
        has_balance, np.round(np.clip(rng.normal(121_500.0, 25_000.0, n), 0.0, _MAX_BALANCE), 2), 0
    )
    products = rng.choice(4, size=n, p=_PRODUCTS_P / _PRODUCTS_P.sum()) + 1
    has_card = (rng.random(n) < 0.754).astype(np.float64)
    active = (rng.random(n) < 0.498).astype(np.float64)
    salary = np.round(_MIN_SALARY + rng.beta(1.3, 1.0, n) * (_MAX_SALARY - _MIN_SALARY), 2)

    logit = (
        _INTERCEPT
        + 1.5 * (geography == 2)
        + 0.05 * (geography == 1)
        + 0.7 * ~male
        + 1.3 * (1.0 - active)
        + _PRODUCT_LOGIT[products - 1]
        + 4.6 * np.exp(-0.5 * ((age - 54.0) / 8.5) ** 2)
        + 0.30 * has_balance
        - 0.0008 * (credit - 650)
    )
    exited = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    flip = rng.random(n) < _LABEL_NOISE
    exited = (exited ^ flip).astype(np.int64)

    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "CustomerId": rng.integers(15_565_701, 15_815_691, size=n, dtype=np.int64),
            "Surname": _SURNAMES[rng.integers(len(_SURNAMES), size=n)],
            "CreditScore": credit,
            "Geography": _GEOGRAPHIES[geography],
            "Gender": np.where(male, "Male", "Female").astype(object),
            "Age": age.astype(np.float64),
            "Tenure": tenure.astype(np.int64),
            "Balance": balance.astype(np.float64),
            "NumOfProducts": products.astype(np.int64),
            "HasCrCard": has_card,
            "IsActiveMember": active,
            "EstimatedSalary": salary,
            DEFAULT_TARGET: exited,
        }
    )
