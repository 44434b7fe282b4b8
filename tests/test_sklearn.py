"""glmmcore.sklearn: scikit-learn's own estimator checks, and the estimators in real use."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from glmmcore.sklearn import GLMMClassifier, GLMMRegressor  # noqa: E402

# a check that cannot apply to a mixed model, with the reason
EXPECTED_FAILURES = {
    GLMMClassifier: {
        "check_sample_weight_equivalence_on_dense_data":
            "30 columns, 15 rows: separated classes have no maximum likelihood (no penalty), "
            "so the weighted and the repeated fits stop at different points on the way to "
            "infinity",
    },
}


def _expected_failures(estimator):
    return EXPECTED_FAILURES.get(type(estimator), {})


# the checks give no groups: column mode then fits the fixed effects alone, and says so
@pytest.mark.filterwarnings("ignore:no groups given:glmmcore.GlmmWarning")
@parametrize_with_checks([GLMMRegressor(), GLMMClassifier()],
                         expected_failed_checks=_expected_failures)
def test_sklearn_checks(estimator, check):
    check(estimator)
